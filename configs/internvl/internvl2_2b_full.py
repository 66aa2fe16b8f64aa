# InternVL2-2B full fine-tune of the LLM and projector (ViT frozen) with stock XTuner 0.2.0's settings
# (internvl_v2_internlm2_2b_finetune.py). Base of the other sizes' full fine-tunes.
#
#   NPROC_PER_NODE=8 xtuner train xtuner_ext_internvl2_2b_full --deepspeed deepspeed_zero1
#
# Trainable weights are kept in fp32 (AdamW state too): 16 bytes per LLM parameter before ZeRO sharding.
_base_ = ['./internvl2_2b_lora.py']

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
batch_size = 4  # per device, stock
accumulative_counts = 4  # 16 samples per optimizer step per device

#######################################################################
#                   What differs from the 2B LoRA                     #
#######################################################################
model = dict(freeze_llm=False, llm_lora=None)

train_dataloader = dict(batch_size=batch_size, sampler=dict(per_device_batch_size=batch_size * accumulative_counts))

optim_wrapper = dict(accumulative_counts=accumulative_counts)

default_hooks = dict(checkpoint=dict(save_optimizer=False))  # stock: a full optimizer state is 2x the fp32 model
