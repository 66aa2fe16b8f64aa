# The personal-assistant QLoRA on a tiny InternLM2, on a CPU (tests and demos); inherits the
# 1.8B recipe and holds only what differs. Create its inputs first:
#     python tools/make_tiny_internlm2.py embedded/internlm2_tiny
#     python tools/make_assistant_data.py --name 小明 -n 200 -o embedded/assistant/personal_assistant.json
# Override the paths with XTUNER_EXT_MODEL_PATH and XTUNER_EXT_DATA_ROOT.
_base_ = ['./internlm2_chat_1_8b_qlora_assistant.py']

model_path = '{{$XTUNER_EXT_MODEL_PATH:embedded/internlm2_tiny}}'
data_root = '{{$XTUNER_EXT_DATA_ROOT:embedded/assistant}}'
data_path = data_root + '/personal_assistant.json'
max_length = 256  # a few tiny-tokenizer Q/As per packed sample
accumulative_counts = 1
max_epochs = 1
lr = 1e-2  # a tiny random model needs a large step to learn the answer in a few dozen iterations
save_steps = 20

tokenizer = dict(_base_.tokenizer, pretrained_model_name_or_path=model_path)  # whole: the hook takes it too
model = dict(
    llm=dict(pretrained_model_name_or_path=model_path),
    lora=dict(r=16, lora_alpha=32, lora_dropout=0.0),
    use_activation_checkpointing=False)

train_dataset = dict(dataset=dict(data_files=dict(train=data_path)), tokenizer=tokenizer, max_length=max_length)
train_dataloader = dict(dataset=train_dataset)

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',  # fp32 on the CPU: no mixed precision
    optimizer=dict(type='AdamW', lr=lr, betas=(0.9, 0.999), weight_decay=0),
    clip_grad=dict(max_norm=1, error_if_nonfinite=False),
    accumulative_counts=accumulative_counts)

param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False, begin=0)]

train_cfg = dict(max_epochs=max_epochs)
custom_hooks = [
    dict(type='RandomStateHook'),
    dict(_base_.before_after_chat_hook, evaluation_inputs=_base_.evaluation_inputs, train_data=data_path,
         train_items=1, tokenizer=tokenizer, prompt_template=_base_.prompt_template, system=_base_.SYSTEM,
         every_n_iters=None),  # before + after only; max_new_tokens=64 holds the 30-character answer
]
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=save_steps))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
