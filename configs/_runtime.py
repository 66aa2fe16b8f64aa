# Runtime shared by every config here (InternVL2, LLaVA, the personal assistant): hooks,
# environment, logging, visualizer. A base, not a config to run: the leading underscore keeps
# it out of configs/index.json, so `xtuner list-cfg -p xtuner_ext` does not list it.
#
# The config inheriting it sets what depends on its settings (a base cannot see them):
#     default_hooks = dict(checkpoint=dict(interval=save_steps, max_keep_ckpts=save_total_limit))
#     randomness = dict(seed=seed)
#     custom_hooks = [dict(type='RandomStateHook'), dict(_base_.before_after_chat_hook, ...)]
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', log_metric_by_epoch=False, interval=10),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=500, max_keep_ckpts=2,
                    backend_args=dict(backend='atomic_local')),  # temp file + rename: no half-written checkpoints
    sampler_seed=dict(type='DistSamplerSeedHook'),
)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)

# Scalars (loss, before/after metrics) to work_dir/<time>/vis_data: json and TensorBoard event files
visualizer = dict(type='Visualizer', vis_backends=[dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')])
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=None, deterministic=False)
log_processor = dict(by_epoch=False)
