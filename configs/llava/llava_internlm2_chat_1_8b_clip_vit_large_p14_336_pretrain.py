# LLaVA-InternLM2-1.8B, stage 1 ("kindergarten"): train the CLIP->LLM projector on LLaVA-Pretrain.
# 4-bit frozen InternLM2-chat-1.8B (loaded natively, no trust_remote_code), frozen CLIP-ViT-L/14-336.
#
#   NPROC_PER_NODE=8 xtuner train configs/llava/llava_internlm2_chat_1_8b_clip_vit_large_p14_336_pretrain.py \
#       --deepspeed deepspeed_zero2
#
# Its last checkpoint (iter_2181.pth: 558,128 pairs / 256 per step) is the tutorial's projector.
# Paths are relative to the directory `xtuner train` runs in; override them with the environment
# variables XTUNER_EXT_MODEL_PATH (official internlm2-chat-1_8b folder), XTUNER_EXT_CLIP_PATH
# (clip-vit-large-patch14-336 folder) and XTUNER_EXT_DATA_ROOT (holding LLaVA-Pretrain/).
# Settings: XTuner's llava_internlm2_chat_1_8b_clip_vit_large_p14_336_e1_gpu8_pretrain.
custom_imports = dict(imports=['xtuner_ext'], allow_failed_imports=False)
_base_ = ['../_runtime.py',  # hooks, environment, logging, visualizer (shared with configs/internlm2/)
          '../../hooks/before_after_chat.py']  # the before/after chat report (BeforeAfterChatHook)

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
llm_path = '{{$XTUNER_EXT_MODEL_PATH:./models/internlm2-chat-1_8b}}'
clip_path = '{{$XTUNER_EXT_CLIP_PATH:./models/clip-vit-large-patch14-336}}'
data_root = '{{$XTUNER_EXT_DATA_ROOT:./data/llava_data}}'
data_path = data_root + '/LLaVA-Pretrain/blip_laion_cc_sbu_558k.json'
image_folder = data_root + '/LLaVA-Pretrain/images'
# PROMPT_TEMPLATE.internlm2_chat of XTuner, spelled out.
prompt_template = dict(
    SYSTEM='<|im_start|>system\n{system}<|im_end|>\n',
    INSTRUCTION='<|im_start|>user\n{input}<|im_end|>\n<|im_start|>assistant\n',
    SUFFIX='<|im_end|>',
    SUFFIX_AS_EOS=True,
    SEP='\n',
    STOP_WORDS=['<|im_end|>'])
max_length = 1472  # 2048 - 576 image tokens ((336 / 14) ** 2)
pad_image_to_square = False

batch_size = 32  # per device; x 8 GPUs = 256 per step
accumulative_counts = 1
dataloader_num_workers = 4
max_epochs = 1
lr = 1e-3
betas = (0.9, 0.999)
weight_decay = 0
max_norm = 1  # grad clip
warmup_ratio = 0.03

save_steps = 500
save_total_limit = 2
seed = 42

# Questions for the before/after comparison (stock values) and the image they are asked about.
evaluation_inputs = ['请描述一下这张照片', 'Please describe this picture']
evaluation_images = data_root + '/view.jpg'  # a local file: stock's https URL fails offline
SYSTEM = ''

#######################################################################
#            PART 2  Model, Tokenizer & Image Processor               #
#######################################################################
tokenizer = dict(type='xtuner_ext.models.internlm2.internlm2_tokenizer', pretrained_model_name_or_path=llm_path)
image_processor = dict(type='xtuner_ext.models.llava.clip_image_processor', pretrained_model_name_or_path=clip_path)

model = dict(
    type='xtuner.model.LLaVAModel',
    freeze_llm=True,
    freeze_visual_encoder=True,
    llm=dict(
        type='xtuner_ext.models.internlm2.build_internlm2',  # official folder, no remote code
        pretrained_model_name_or_path=llm_path,
        torch_dtype='auto',  # bf16 on GPU (stock: fp16), fp32 on CPU
        quantization=dict(quant_type='nf4', double_quant=True, compute_dtype='auto', skip_modules=['lm_head'])),
    visual_encoder=dict(
        type='xtuner_ext.models.llava.build_clip_vision',
        pretrained_model_name_or_path=clip_path,
        torch_dtype='float32'),  # as stock: the projector is made in this dtype and trains in it
)

#######################################################################
#                      PART 3  Dataset & Dataloader                   #
#######################################################################
llava_dataset = dict(
    type='xtuner.dataset.LLaVADataset',
    data_path=data_path,
    image_folder=image_folder,
    tokenizer=tokenizer,
    image_processor=image_processor,
    dataset_map_fn='xtuner.dataset.map_fns.llava_map_fn',
    template_map_fn=dict(type='xtuner.dataset.map_fns.template_map_fn_factory', template=prompt_template),
    max_length=max_length,
    pad_image_to_square=pad_image_to_square)

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=dataloader_num_workers,
    pin_memory=True,
    dataset=llava_dataset,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='xtuner.dataset.collate_fns.default_collate_fn'))

#######################################################################
#                    PART 4  Scheduler & Optimizer                    #
#######################################################################
optim_wrapper = dict(
    type='AmpOptimWrapper',
    optimizer=dict(type='AdamW', lr=lr, betas=betas, weight_decay=weight_decay),
    clip_grad=dict(max_norm=max_norm, error_if_nonfinite=False),
    accumulative_counts=accumulative_counts,
    loss_scale='dynamic',
    dtype='bfloat16')

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-5, by_epoch=True, begin=0, end=warmup_ratio * max_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=True, begin=warmup_ratio * max_epochs, end=max_epochs,
         convert_to_iter_based=True),
]

# A short smoke test: --cfg-options train_cfg.iter_cap=3
train_cfg = dict(type='CappedTrainLoop', max_epochs=max_epochs, iter_cap=None)

#######################################################################
#                           PART 5  Runtime                           #
#######################################################################
# Hooks, environment, logging and visualizer come from ../_runtime.py. The before/after report:
# greedy answers to evaluation_inputs about evaluation_images before training, at each checkpoint
# and after, the prompt built from prompt_template + SYSTEM as stock EvaluateChatHook builds it.
custom_hooks = [
    dict(type='RandomStateHook'),  # exact --resume
    dict(_base_.before_after_chat_hook, evaluation_inputs=evaluation_inputs, evaluation_images=evaluation_images,
         tokenizer=tokenizer, image_processor=image_processor, prompt_template=prompt_template, system=SYSTEM,
         every_n_iters=save_steps),
]
default_hooks = dict(checkpoint=dict(interval=save_steps, max_keep_ckpts=save_total_limit))
randomness = dict(seed=seed)
