# InternVL2-1B (Qwen2-0.5B-Instruct) LoRA: not in stock XTuner, so the 2B settings.
#
#   NPROC_PER_NODE=8 xtuner train xtuner_ext_internvl2_1b_lora --deepspeed deepspeed_zero1  # as for 2B

_base_ = ['./internvl2_2b_lora.py']

model_path = '{{$XTUNER_EXT_MODEL_PATH:./models/InternVL2-1B}}'

model = dict(model_path=model_path)

train_dataset = dict(model_path=model_path)
train_dataloader = dict(dataset=train_dataset)
