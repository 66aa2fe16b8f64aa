# LLaVA stage 1 on a tiny InternLM2 + tiny CLIP, on a CPU (tests); inherits the 1.8B recipe.
#     python tools/make_tiny_internlm2.py embedded/internlm2_tiny
#     python -c "from xtuner_ext.models.llava import make_tiny_clip; make_tiny_clip('embedded/clip_tiny')"
_base_ = ['./llava_internlm2_chat_1_8b_clip_vit_large_p14_336_pretrain.py']

llm_path = '{{$XTUNER_EXT_MODEL_PATH:embedded/internlm2_tiny}}'
clip_path = '{{$XTUNER_EXT_CLIP_PATH:embedded/clip_tiny}}'
data_root = '{{$XTUNER_EXT_DATA_ROOT:embedded/llava_data}}'
data_path = data_root + '/repeated_data.json'
image_folder = data_root
max_length = 256
batch_size = 4
dataloader_num_workers = 0
lr = 1e-2
save_steps = 10

# The sample's own questions and image for the before/after report.
evaluation_inputs = ['Describe this image.', 'What is the equipment in the image?']
evaluation_images = data_root + '/test_img/oph.png'

# Whole dicts (not only the changed key): the before/after hook takes them too.
tokenizer = dict(_base_.tokenizer, pretrained_model_name_or_path=llm_path)
image_processor = dict(_base_.image_processor, pretrained_model_name_or_path=clip_path)
model = dict(llm=dict(pretrained_model_name_or_path=llm_path),
             visual_encoder=dict(pretrained_model_name_or_path=clip_path),
             use_activation_checkpointing=False)
llava_dataset = dict(data_path=data_path, image_folder=image_folder, tokenizer=tokenizer,
                     image_processor=image_processor, max_length=max_length)
train_dataloader = dict(batch_size=batch_size, num_workers=dataloader_num_workers, pin_memory=False,
                        dataset=llava_dataset)
optim_wrapper = dict(_delete_=True, type='OptimWrapper',  # fp32 on the CPU
                     optimizer=dict(type='AdamW', lr=lr, betas=(0.9, 0.999), weight_decay=0),
                     clip_grad=dict(max_norm=1, error_if_nonfinite=False))
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False, begin=0)]
custom_hooks = [
    dict(type='RandomStateHook'),
    dict(_base_.before_after_chat_hook, evaluation_inputs=evaluation_inputs, evaluation_images=evaluation_images,
         train_data=data_path, train_items=2, tokenizer=tokenizer, image_processor=image_processor,
         prompt_template=_base_.prompt_template, system=_base_.SYSTEM,
         max_new_tokens=16),  # the 2 sample records: memorised answers; before + after only
]
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=save_steps))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
