# InternVL2-4B (Phi-3-mini-128k-instruct) QLoRA (4-bit NF4 LLM + LoRA), settings of stock
# internvl_v2_phi3_4b_qlora_finetune.py.
#
#   NPROC_PER_NODE=8 xtuner train xtuner_ext_internvl2_4b_qlora --deepspeed deepspeed_zero1

_base_ = ['./internvl2_4b_lora.py']

model = dict(quantization_llm=dict(_delete_=True,  # replaces the LoRA base's None
                                   quant_type='nf4', double_quant=True, compute_dtype='auto',
                                   skip_modules=['lm_head']))  # the output head stays bf16
