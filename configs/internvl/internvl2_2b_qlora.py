# InternVL2-2B QLoRA on CLoT_cn_2000: the InternLM camp-3 "meme jokes" fine-tune, on today's stack.
#
#   xtuner train configs/internvl/internvl2_2b_qlora.py                               # one GPU
#   xtuner train configs/internvl/internvl2_2b_qlora.py --deepspeed deepspeed_zero2   # needs deepspeed
#   NPROC_PER_NODE=8 xtuner train xtuner_ext_internvl2_2b_qlora --deepspeed deepspeed_zero2
#
# Check the data first: python tools/check_data.py configs/internvl/internvl2_2b_qlora.py
# Paths are relative to the directory `xtuner train` runs in; override them with the environment
# variables XTUNER_EXT_MODEL_PATH (the official InternVL2-2B folder) and XTUNER_EXT_DATA_ROOT (the
# CLoT_cn_2000 folder holding ex_cn.json and ex_images/). To train on a held-out split instead:
#     python -m xtuner_ext.data.split_cli --data $XTUNER_EXT_DATA_ROOT --out $XTUNER_EXT_DATA_ROOT \
#         --heldout-count 100
# and set data_path = data_root + '/train.json'.
#
# Types are registry names (xtuner_ext registers its own on import) rather than imported classes:
# mmengine parses a config with imports lazily, and then `{{$VAR:default}}` environment
# substitution is off.
custom_imports = dict(imports=['xtuner_ext'], allow_failed_imports=False)
_base_ = ['../../hooks/before_after_chat.py',  # the before/after chat report (BeforeAfterChatHook)
          '../_runtime.py']  # hooks, environment, logging, visualizer (shared with configs/llava/, configs/internlm2/)

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
model_path = '{{$XTUNER_EXT_MODEL_PATH:./models/InternVL2-2B}}'
data_root = '{{$XTUNER_EXT_DATA_ROOT:./data/CLoT_cn_2000}}'
data_path = data_root  # the CLoT folder: ex_cn.json there (or one folder up) + ex_images/
image_folder = data_root
max_length = 6656  # tutorial value: 7 tiles x 256 image tokens + prompt + answer fit easily
# Tiling and prompt overrides, declared once: the model (chat) and the dataset build the same
# InternVL2Processor from them. None / absent keys keep the model folder's config.json values.
processor = dict(max_dynamic_patch=6)  # tutorial value (InternVL2-2B's config.json allows 12)

# Speed (bench/side_by_side.py, README "Training speed"; one H200, full-size architecture): the 16
# samples of an optimizer step are one padding-free packed row, only the first `recompute_llm_layers`
# of the LLM's 24 layers recompute in backward, and Liger's fused RMSNorm, SwiGLU and RoPE run on CUDA:
# 25.0-25.3 samples/s at 28.7 GiB peak on CLoT-like batches (stock XTuner: 4.5 samples/s, same GPU run);
# through `xtuner train` on 2000 CLoT-like records with the ViT cache below, 0.60 s per step of 16
# once every image is cached, ~62 GiB peak with the full cache (an 80 GB card); 6 epochs in about
# 9.3 minutes (H200).
# On a 24 GB card (<= 7 GiB peak; 5.1 GiB measured): batch_size = 4, accumulative_counts = 4 (the
# tutorial's split: same samples per step, each micro-batch's loss a token mean),
# recompute_llm_layers = None (recompute every layer) and vision_feature_cache_gib = None. Long samples
# (4 x 6656 tokens per row) within 24 GiB: recompute_llm_layers = 19, recompute_keeps = ('attention',)
# and packed_attention='cudnn' (4.71-4.74 samples/s at 23.3 GiB; cuDNN's kernel is slower on short
# CLoT rows, and there the kept outputs buy nothing).
batch_size = 16  # per device, packed into one row
accumulative_counts = 1  # 16 = 16 samples x 1 micro-batch per optimizer step, as the tutorial's 4 x 4
recompute_llm_layers = 14  # of 24; None = all (least memory), 0 = none (~71 GiB at 16 samples)
recompute_keeps = ()  # outputs the recomputed layers keep: 'attention', 'down_proj' (see above)
# The frozen ViT runs once per image: its features (2 MiB per 448-px tile) stay on the GPU, so epochs
# 2-6 skip it (same loss and gradients). 2000 CLoT memes of ~4 tiles need ~16 GiB; past the cap the
# other images run the ViT each time. None = off (24 GB cards, one-epoch runs).
vision_feature_cache_gib = 20
dataloader_num_workers = 4
max_epochs = 6  # 2000 records / 16 = 125 steps (125 iterations of 16) per epoch
lr = 2e-5
betas = (0.9, 0.999)
weight_decay = 0.05
max_norm = 1.0
warmup_ratio = 0.03

save_steps = 1000
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
    freeze_projector=False,  # mlp1 trains (in fp32), as in stock XTuner
    torch_dtype='auto',  # bf16 on GPU
    quantization_llm=dict(quant_type='nf4', double_quant=True, compute_dtype='auto',
                          skip_modules=['lm_head']),  # the output head stays bf16
    quantization_vit=None,
    llm_lora=dict(
        r=128,
        lora_alpha=256,
        lora_dropout=0.05,
        # InternLM2's wqkv/wo/w1/w3/w2 under their native (Llama) names; never the head or embeddings
        target_modules=['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
        task_type='CAUSAL_LM'),
    visual_encoder_lora=None,  # e.g. dict(r=64, lora_alpha=16, target_modules=['attn.qkv', 'attn.proj',
    #                                      'mlp.fc1', 'mlp.fc2'])
    gradient_checkpointing=True,
    recompute_llm_layers=recompute_llm_layers,  # the other layers keep their activations (same gradients)
    recompute_keeps=recompute_keeps,  # kept instead of re-run in the recomputed layers (same gradients)
    packed_attention='auto',  # one varlen flash call per layer on CUDA; per-sample SDPA elsewhere
    liger_layers=True,  # Liger's fused RMSNorm, SwiGLU and RoPE on CUDA (same math; +18% in the bench; CPU unchanged)
    lora_addmm=True,  # each LoRA update added inside one GEMM (same function as peft's clone + scale + add)
    processor=processor,  # chat() tiles and prompts as training does
    fused_loss='liger',  # output head + cross-entropy fused chunk-wise on CUDA (same loss; plain on CPU)
    frozen_vision_no_grad=True,  # the frozen ViT keeps no activations (same gradients)
    vision_feature_cache_gib=vision_feature_cache_gib,  # each image through the ViT once per run (see above)
    generation_config=dict(max_new_tokens=128, do_sample=False),
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
    processor=processor,
    on_bad_record='skip',  # counted in the log; use 'error' to stop at the first bad record
)

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=dataloader_num_workers,
    dataset=train_dataset,
    sampler=dict(type='xtuner.dataset.samplers.LengthGroupedSampler', length_property='modality_length',
                 per_device_batch_size=batch_size * accumulative_counts),
    # the same batches, epoch after epoch without the loader's restart (2 s sleep + empty queue) in between
    batch_sampler=dict(type='EpochChainBatchSampler'),
    collate_fn=dict(type='internvl2_packed_collate_fn'),  # padding-free; 'internvl2_collate_fn' pads
    pin_memory=True,
    persistent_workers=True,  # no worker restart (and dataset re-pickling) at each of the 6 epochs
)

#######################################################################
#                    PART 4  Scheduler & Optimizer                    #
#######################################################################
optim_wrapper = dict(
    type='AmpOptimWrapper',  # replaced by DeepSpeed's with --deepspeed
    optimizer=dict(type='AdamW', lr=lr, betas=betas, weight_decay=weight_decay),
    clip_grad=dict(max_norm=max_norm, error_if_nonfinite=False),
    accumulative_counts=accumulative_counts,
    loss_scale='dynamic',
    dtype='bfloat16',  # trainable weights are fp32, so the grad scaler never meets bf16 grads
)

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-5, by_epoch=True, begin=0, end=warmup_ratio * max_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=True, begin=warmup_ratio * max_epochs,
         end=max_epochs, convert_to_iter_based=True),
]

# A short smoke test: --cfg-options train_cfg.iter_cap=3 (the schedule is squeezed to fit)
train_cfg = dict(type='CappedTrainLoop', max_epochs=max_epochs, iter_cap=None)

#######################################################################
#                           PART 5  Runtime                           #
#######################################################################
custom_hooks = [
    dict(type='RandomStateHook'),  # exact --resume (LoRA dropout)
    # Answers before/after on the first training records; after splitting (see the top), add
    # heldout_data=data_root + '/heldout.json' to score unseen images too.
    dict(_base_.before_after_chat_hook, train_data=data_path, image_folder=image_folder, every_n_iters=save_steps),
]

# The rest of the runtime (logger, environment, TensorBoard, ...) comes from ../_runtime.py.
default_hooks = dict(checkpoint=dict(
    save_optimizer=True,  # LoRA + projector optimizer state is small; needed to --resume
    interval=save_steps,
    max_keep_ckpts=save_total_limit,
))
randomness = dict(seed=seed)
