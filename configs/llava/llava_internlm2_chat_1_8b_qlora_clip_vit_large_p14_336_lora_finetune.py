# LLaVA-InternLM2-1.8B, stage 2: QLoRA fine-tune (LLM LoRA + CLIP LoRA) from a pretrained projector.
#
#   NPROC_PER_NODE=8 xtuner train configs/llava/llava_internlm2_chat_1_8b_qlora_clip_vit_large_p14_336_lora_finetune.py \
#       --deepspeed deepspeed_zero2
#
# XTUNER_EXT_PRETRAINED_PTH: stage 1's checkpoint (e.g. the tutorial's iter_2181.pth); other paths as
# in the pretrain config (XTUNER_EXT_DATA_ROOT holds LLaVA-Instruct-150K/ and llava_images/).
# Settings: XTuner's llava_internlm2_chat_1_8b_qlora_clip_vit_large_p14_336_lora_e1_gpu8_finetune.
_base_ = ['./llava_internlm2_chat_1_8b_clip_vit_large_p14_336_pretrain.py']

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
pretrained_pth = '{{$XTUNER_EXT_PRETRAINED_PTH:./work_dirs/llava_internlm2_chat_1_8b_clip_vit_large_p14_336_pretrain/iter_2181.pth}}'
data_root = '{{$XTUNER_EXT_DATA_ROOT:./data/llava_data}}'
data_path = data_root + '/LLaVA-Instruct-150K/llava_v1_5_mix665k.json'
image_folder = data_root + '/llava_images'
pad_image_to_square = True

batch_size = 16  # per device; x 8 GPUs = 128 per step
lr = 2e-4

# The before/after report asks the pretrain stage's questions (evaluation_inputs) about its image
# (data_root + '/view.jpg'); the small-GPU variant (..._tutorial.py) shows how to change them.

#######################################################################
#                  What differs from the pretrain stage               #
#######################################################################
model = dict(
    pretrained_pth=pretrained_pth,  # the stage-1 projector
    llm_lora=dict(type='peft.LoraConfig', r=512, lora_alpha=256, lora_dropout=0.05, bias='none',
                  target_modules=['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
                  task_type='CAUSAL_LM'),
    visual_encoder_lora=dict(type='peft.LoraConfig', r=64, lora_alpha=16, lora_dropout=0.05, bias='none',
                             target_modules=['q_proj', 'k_proj', 'v_proj', 'out_proj', 'fc1', 'fc2']),
)

llava_dataset = dict(data_path=data_path, image_folder=image_folder, pad_image_to_square=pad_image_to_square)
train_dataloader = dict(batch_size=batch_size, dataset=llava_dataset)

optim_wrapper = dict(optimizer=dict(lr=lr))
