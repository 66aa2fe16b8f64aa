# InternVL2-1B (Qwen2-0.5B-Instruct) QLoRA (4-bit NF4 LLM + LoRA): not in stock XTuner, so the 2B settings.
#
#   NPROC_PER_NODE=8 xtuner train xtuner_ext_internvl2_1b_qlora --deepspeed deepspeed_zero1  # as for 2B

_base_ = ['./internvl2_1b_lora.py']

model = dict(quantization_llm=dict(_delete_=True,  # replaces the LoRA base's None
                                   quant_type='nf4', double_quant=True, compute_dtype='auto',
                                   skip_modules=['lm_head']))  # the output head stays bf16
