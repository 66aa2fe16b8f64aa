# InternVL2-26B (InternLM2-chat-20B, vision InternViT-6B) full fine-tune (LLM + projector; ViT frozen), settings
# of stock internvl_v2_internlm2_26b_finetune.py.
#
#   NPROC_PER_NODE=8 xtuner train xtuner_ext_internvl2_26b_full --deepspeed deepspeed_zero3
# (stock: 26B must run ZeRO-3)

_base_ = ['./internvl2_2b_full.py']

model_path = '{{$XTUNER_EXT_MODEL_PATH:./models/InternVL2-26B}}'
batch_size = 1  # per device, stock
accumulative_counts = 8  # 8 samples per optimizer step per device

model = dict(model_path=model_path)

train_dataset = dict(model_path=model_path)
train_dataloader = dict(batch_size=batch_size, dataset=train_dataset,
                        sampler=dict(per_device_batch_size=batch_size * accumulative_counts))

optim_wrapper = dict(accumulative_counts=accumulative_counts)
