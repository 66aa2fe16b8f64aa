# QLoRA fine-tune of the embedded tiny InternVL2 on the embedded CLoT-style sample, on a CPU.
#
# The 2B tutorial recipe (internvl2_2b_qlora.py, inherited below), shrunk so a 2-core CPU trains
# it in a few minutes (`make demo`); this file holds only what differs. Create the embedded
# default first (make demo does it): a tiny model whose tokenizer spells every joke of the sample in
# whole characters, with 224-pixel tiles
#     python tools/make_tiny_model.py embedded/internvl2_tiny --embedded
#     python tools/make_sample_data.py embedded/CLoT_sample
# Paths are relative to the directory `xtuner train` runs in; override them with the environment
# variables XTUNER_EXT_MODEL_PATH and XTUNER_EXT_DATA_ROOT.
_base_ = ['./internvl2_2b_qlora.py']

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
model_path = '{{$XTUNER_EXT_MODEL_PATH:embedded/internvl2_tiny}}'
data_root = '{{$XTUNER_EXT_DATA_ROOT:embedded/CLoT_sample}}'
data_path = data_root + '/train.json'  # the held-out images are in heldout.json
image_folder = data_root
max_length = 1024  # 1 tile x 256 image tokens (64 for the embedded model's 224-pixel tiles) + prompt + answer
processor = dict(max_dynamic_patch=1)  # one tile per image: keeps a CPU step short

batch_size = 4
accumulative_counts = 1
dataloader_num_workers = 0
max_epochs = 50  # 40 train records / 4 = 10 iterations per epoch -> 500 iterations (~2-3 CPU minutes)
lr = 3e-3  # 500 iterations learn the training jokes by heart (README, "Before/after report")
weight_decay = 0.0
warmup_iters = 5

save_steps = 250

#######################################################################
#                  What differs from the 2B recipe                    #
#######################################################################
model = dict(
    model_path=model_path,
    llm_lora=dict(r=32, lora_alpha=64),
    gradient_checkpointing=False,  # short sequences: recomputation costs more than it saves
    recompute_llm_layers=None,  # (the 2B recipe's partial recomputation needs checkpointing on)
    lora_addmm=False,  # peft's own LoRA forward: the rounding the demo's learning was tuned with
    liger_layers=False,  # Liger's layers are CUDA kernels, and this config also runs Qwen2/Phi-3 tiny folders
    processor=processor,
    generation_config=dict(max_new_tokens=24),
)

train_dataset = dict(model_path=model_path, data_path=data_path, image_folder=image_folder, max_length=max_length,
                     processor=processor, on_bad_record='error')

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=dataloader_num_workers,
    dataset=train_dataset,
    sampler=dict(per_device_batch_size=batch_size * accumulative_counts),
    collate_fn=dict(type='internvl2_collate_fn'),  # padded batches: the recipe the demo's learning was tuned with
    pin_memory=False,  # CPU
    persistent_workers=False,  # needs num_workers > 0
)

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',  # fp32 on the CPU: no mixed precision
    optimizer=dict(type='AdamW', lr=lr, betas=(0.9, 0.999), weight_decay=weight_decay),
    clip_grad=dict(max_norm=1.0, error_if_nonfinite=False),
    accumulative_counts=accumulative_counts,
)

param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='ConstantLR', factor=1.0, by_epoch=False, begin=warmup_iters),
]

train_cfg = dict(max_epochs=max_epochs)

custom_hooks = [
    dict(type='RandomStateHook'),
    dict(_base_.before_after_chat_hook, heldout_data=data_root + '/heldout.json', train_data=data_path,
         image_folder=image_folder, every_n_iters=save_steps, max_new_tokens=32, max_items=8,
         train_items=4),  # all 8 held-out images and 4 training ones; a joke is at most 22 tokens
]

default_hooks = dict(
    logger=dict(interval=1),
    checkpoint=dict(interval=save_steps),
)

env_cfg = dict(dist_cfg=dict(backend='gloo'))
# Several CPU ranks (NPROC_PER_NODE=2 xtuner train ...): DDP over CPU modules takes no device ids
model_wrapper_cfg = dict(type='MMDistributedDataParallel', device_ids=None)
