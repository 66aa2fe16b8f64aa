# The InternLM LLaVA tutorial's fine-tune on one small GPU: batch 1 on the tutorial's repeated
# single-image data (unique_data.json x 200 -> 1,200 records -> iter_1200.pth), from its iter_2181.pth.
#
#   python tools/repeat_data.py -i llava_data/unique_data.json -o llava_data/repeated_data.json -n 200
#   XTUNER_EXT_PRETRAINED_PTH=iter_2181.pth XTUNER_EXT_DATA_ROOT=llava_data \
#       xtuner train configs/llava/llava_internlm2_chat_1_8b_qlora_clip_vit_large_p14_336_lora_finetune_tutorial.py
_base_ = ['./llava_internlm2_chat_1_8b_qlora_clip_vit_large_p14_336_lora_finetune.py']

pretrained_pth = '{{$XTUNER_EXT_PRETRAINED_PTH:./iter_2181.pth}}'
data_root = '{{$XTUNER_EXT_DATA_ROOT:./llava_data}}'
data_path = data_root + '/repeated_data.json'  # tools/repeat_data.py output
image_folder = data_root  # records name test_img/oph.jpg relative to it
batch_size = 1  # tutorial value (stock: 16)
dataloader_num_workers = 0

# The tutorial's questions about its image, for the before/after report (with the first training
# records: memorised answers).
evaluation_inputs = ['Please describe this picture', 'What is the equipment in the image?']
evaluation_images = data_root + '/test_img/oph.jpg'  # stock's https URL fails offline

model = dict(pretrained_pth=pretrained_pth)
llava_dataset = dict(data_path=data_path, image_folder=image_folder)
train_dataloader = dict(batch_size=batch_size, num_workers=dataloader_num_workers, pin_memory=False,
                        dataset=llava_dataset)

custom_hooks = [
    dict(type='RandomStateHook'),
    dict(_base_.before_after_chat_hook, evaluation_inputs=evaluation_inputs, evaluation_images=evaluation_images,
         train_data=data_path, image_folder=image_folder, tokenizer=_base_.tokenizer,
         image_processor=_base_.image_processor, prompt_template=_base_.prompt_template, system=_base_.SYSTEM,
         every_n_iters=_base_.save_steps),  # at each checkpoint, as stock
]
