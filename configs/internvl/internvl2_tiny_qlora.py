# QLoRA fine-tune of the embedded tiny InternVL2 on the embedded CLoT-style sample, on a CPU.
#
# The same classes and recipe as internvl2_2b_qlora.py, shrunk so a 2-core CPU trains it in a few
# minutes (`make demo`). Create the embedded default first (make demo does it):
#     python tools/make_tiny_model.py embedded/internvl2_tiny
#     python tools/make_sample_data.py embedded/CLoT_sample
# Paths are relative to the directory `xtuner train` runs in; override them with the environment
# variables XTUNER_EXT_MODEL_PATH and XTUNER_EXT_DATA_ROOT.
#
# Types are registry names (xtuner_ext registers its own on import) rather than imported classes:
# mmengine parses a config with imports lazily, and then `{{$VAR:default}}` environment
# substitution is off.
custom_imports = dict(imports=['xtuner_ext'], allow_failed_imports=False)

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
model_path = '{{$XTUNER_EXT_MODEL_PATH:embedded/internvl2_tiny}}'
data_root = '{{$XTUNER_EXT_DATA_ROOT:embedded/CLoT_sample}}'
data_path = data_root + '/train.json'  # the held-out images are in heldout.json
image_folder = data_root
max_length = 1024  # 3 tiles x 256 image tokens + prompt + answer fit
max_dynamic_patch = 2  # 2 tiles + thumbnail at most: keeps a CPU step short

batch_size = 4
accumulative_counts = 1
dataloader_num_workers = 0
max_epochs = 10  # 40 train records / 4 = 10 iterations per epoch -> 100 iterations
lr = 5e-3  # a tiny random model needs a large step to visibly learn in 100 iterations
betas = (0.9, 0.999)
weight_decay = 0.0
max_norm = 1.0
warmup_iters = 5

save_steps = 20
save_total_limit = 2
seed = 42

#######################################################################
#                       PART 2  Model                                 #
#######################################################################
model = dict(
    type='InternVL2QLoRA',
    model_path=model_path,
    freeze_llm=True,
    freeze_visual_encoder=True,
    freeze_projector=False,
    torch_dtype='auto',  # fp32 on CPU, bf16 on GPU
    quantization_llm=dict(quant_type='nf4', double_quant=True, compute_dtype='auto',
                          skip_modules=['lm_head']),  # the output head stays unquantized
    llm_lora=dict(
        r=32,
        lora_alpha=64,
        lora_dropout=0.05,
        # InternLM2's wqkv/wo/w1/w3/w2 under their native (Llama) names; never the head or embeddings
        target_modules=['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
        task_type='CAUSAL_LM'),
    gradient_checkpointing=False,  # short sequences: recomputation costs more than it saves
    max_dynamic_patch=max_dynamic_patch,  # chat() tiles images as training does
    generation_config=dict(max_new_tokens=24, do_sample=False),
)

#######################################################################
#                      PART 3  Dataset & Dataloader                   #
#######################################################################
train_dataset = dict(
    type='InternVL2ConversationDataset',
    model_path=model_path,
    data_path=data_path,
    image_folder=image_folder,
    max_length=max_length,
    max_dynamic_patch=max_dynamic_patch,
    on_bad_record='error',
)

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=dataloader_num_workers,
    dataset=train_dataset,
    sampler=dict(type='xtuner.dataset.samplers.LengthGroupedSampler', length_property='modality_length',
                 per_device_batch_size=batch_size * accumulative_counts),
    collate_fn=dict(type='internvl2_collate_fn'),
)

#######################################################################
#                    PART 4  Scheduler & Optimizer                    #
#######################################################################
optim_wrapper = dict(
    type='OptimWrapper',  # fp32 on the CPU: no mixed precision
    optimizer=dict(type='AdamW', lr=lr, betas=betas, weight_decay=weight_decay),
    clip_grad=dict(max_norm=max_norm, error_if_nonfinite=False),
    accumulative_counts=accumulative_counts,
)

param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='ConstantLR', factor=1.0, by_epoch=False, begin=warmup_iters),
]

train_cfg = dict(type='xtuner.engine.runner.TrainLoop', max_epochs=max_epochs)

#######################################################################
#                           PART 5  Runtime                           #
#######################################################################
custom_hooks = [dict(type='RandomStateHook')]  # exact --resume (LoRA dropout)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', log_metric_by_epoch=False, interval=1),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(
        type='CheckpointHook',
        save_optimizer=True,  # needed to --resume
        by_epoch=False,
        interval=save_steps,
        max_keep_ckpts=save_total_limit,
        backend_args=dict(backend='atomic_local'),  # temp file + rename: no half-written checkpoints
    ),
    sampler_seed=dict(type='DistSamplerSeedHook'),
)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='gloo'),
)

visualizer = None
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=seed, deterministic=False)
log_processor = dict(by_epoch=False)
