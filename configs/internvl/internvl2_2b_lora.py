# InternVL2-2B LoRA with stock XTuner 0.2.0's settings (internvl_v2_internlm2_2b_lora_finetune.py),
# on the CLoT data of the tutorial recipe. The base of every stock-settings InternVL2 config here:
# 1B/4B/8B/26B LoRA inherit this file, QLoRA adds 4-bit weights to LoRA, full fine-tunes inherit
# internvl2_2b_full.py (which inherits this file).
#
#   NPROC_PER_NODE=8 xtuner train xtuner_ext_internvl2_2b_lora --deepspeed deepspeed_zero1
#
# Stock XTuner's InternVL README: settings for 8x A100 80G; 2B/4B train with ZeRO-1, 26B needs ZeRO-3.
# Paths: XTUNER_EXT_MODEL_PATH (the official InternVL2-2B folder), XTUNER_EXT_DATA_ROOT (CLoT data).
_base_ = ['./internvl2_2b_qlora.py']

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
model_path = '{{$XTUNER_EXT_MODEL_PATH:./models/InternVL2-2B}}'
max_length = 8192  # stock
processor = dict(max_dynamic_patch=12)  # the released config.json value, which stock XTuner reads

batch_size = 8  # per device, stock
accumulative_counts = 2  # 16 samples per optimizer step per device
max_epochs = 1  # stock
lr = 1e-6  # stock (the tutorial recipe uses 2e-5)
save_total_limit = 1  # stock
llm_lora_targets = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']  # InternLM2

#######################################################################
#                What differs from the tutorial recipe                #
#######################################################################
model = dict(
    model_path=model_path,
    quantization_llm=None,  # LoRA on bf16 weights
    llm_lora=dict(r=128, lora_alpha=256, lora_dropout=0.05, target_modules=llm_lora_targets),
    processor=processor,
    recompute_llm_layers=None,  # every layer recomputes, as stock (the tutorial recipe's 14 of 24 is sized
    #                             for the 2B at 16 samples per row; larger models and batches need all)
    liger_layers=False,  # stock layers (Liger's fused layers are measured for the 2B QLoRA recipe only)
    vision_feature_cache_gib=None,  # one epoch: every image is seen once, a cache would only hold memory
)

train_dataset = dict(model_path=model_path, max_length=max_length, processor=processor)

train_dataloader = dict(
    batch_size=batch_size,
    dataset=train_dataset,
    sampler=dict(per_device_batch_size=batch_size * accumulative_counts),
)

optim_wrapper = dict(optimizer=dict(lr=lr), accumulative_counts=accumulative_counts)

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-5, by_epoch=True, begin=0, end=0.03 * max_epochs,  # warmup_ratio 0.03
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=True, begin=0.03 * max_epochs, end=max_epochs,
         convert_to_iter_based=True),
]

train_cfg = dict(max_epochs=max_epochs)

default_hooks = dict(checkpoint=dict(max_keep_ckpts=save_total_limit))
