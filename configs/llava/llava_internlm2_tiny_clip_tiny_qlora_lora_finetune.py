# LLaVA stage 2 (LLM LoRA + CLIP LoRA from the stage-1 projector) on tiny models, on a CPU (tests).
# XTUNER_EXT_PRETRAINED_PTH: the tiny pretrain run's last iter_N.pth.
_base_ = ['./llava_internlm2_tiny_clip_tiny_pretrain.py']

pretrained_pth = '{{$XTUNER_EXT_PRETRAINED_PTH:work_dirs/llava_internlm2_tiny_clip_tiny_pretrain/iter_10.pth}}'
pad_image_to_square = True
lr = 5e-3

# The 1.8B fine-tune's model changes, at tiny rank.
model = dict(
    pretrained_pth=pretrained_pth,
    llm_lora=dict(type='peft.LoraConfig', r=16, lora_alpha=32, lora_dropout=0.0, bias='none',
                  target_modules=['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
                  task_type='CAUSAL_LM'),
    visual_encoder_lora=dict(type='peft.LoraConfig', r=8, lora_alpha=16, lora_dropout=0.0, bias='none',
                             target_modules=['q_proj', 'k_proj', 'v_proj', 'out_proj', 'fc1', 'fc2']),
)
llava_dataset = dict(pad_image_to_square=pad_image_to_square)
train_dataloader = dict(dataset=llava_dataset)
optim_wrapper = dict(optimizer=dict(lr=lr))
