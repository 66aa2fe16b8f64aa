# InternVL2-8B (InternLM2.5-7B-chat) full fine-tune (LLM + projector; ViT frozen), settings of stock
# internvl_v2_internlm2_5_8b_finetune.py.
#
#   NPROC_PER_NODE=8 xtuner train xtuner_ext_internvl2_8b_full --deepspeed deepspeed_zero1
# (stock XTuner names no ZeRO stage for 8B; ZeRO-1 as for 2B/4B, deepspeed_zero2 if memory is short)

_base_ = ['./internvl2_2b_full.py']

model_path = '{{$XTUNER_EXT_MODEL_PATH:./models/InternVL2-8B}}'

model = dict(model_path=model_path)

train_dataset = dict(model_path=model_path)
train_dataloader = dict(dataset=train_dataset)
