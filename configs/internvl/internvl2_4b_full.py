# InternVL2-4B (Phi-3-mini-128k-instruct) full fine-tune (LLM + projector; ViT frozen), settings of stock
# internvl_v2_phi3_4b_finetune.py.
#
#   NPROC_PER_NODE=8 xtuner train xtuner_ext_internvl2_4b_full --deepspeed deepspeed_zero1

_base_ = ['./internvl2_2b_full.py']

model_path = '{{$XTUNER_EXT_MODEL_PATH:./models/InternVL2-4B}}'

model = dict(model_path=model_path)

train_dataset = dict(model_path=model_path)
train_dataloader = dict(dataset=train_dataset)
