# InternVL2-8B (InternLM2.5-7B-chat) QLoRA (4-bit NF4 LLM + LoRA), settings of stock
# internvl_v2_internlm2_5_8b_qlora_finetune.py.
#
#   NPROC_PER_NODE=8 xtuner train xtuner_ext_internvl2_8b_qlora --deepspeed deepspeed_zero1
# (stock XTuner names no ZeRO stage for 8B; ZeRO-1 as for 2B/4B, deepspeed_zero2 if memory is short)

_base_ = ['./internvl2_8b_lora.py']

model = dict(quantization_llm=dict(_delete_=True,  # replaces the LoRA base's None
                                   quant_type='nf4', double_quant=True, compute_dtype='auto',
                                   skip_modules=['lm_head']))  # the output head stays bf16
