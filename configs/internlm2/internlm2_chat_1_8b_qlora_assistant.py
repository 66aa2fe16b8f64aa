# InternLM2-chat-1.8B QLoRA "personal assistant" (InternLM tutorial): the model learns its owner's name.
#
#   python tools/make_assistant_data.py --name 你的名字 -o data/personal_assistant.json
#   xtuner train configs/internlm2/internlm2_chat_1_8b_qlora_assistant.py   # or by name:
#   xtuner train xtuner_ext_internlm2_chat_1_8b_qlora_assistant
#
# InternLM2 is loaded natively (as transformers' Llama, no trust_remote_code) from the official
# folder. Paths are relative to the directory `xtuner train` runs in; override them with the
# environment variables XTUNER_EXT_MODEL_PATH (the official internlm2-chat-1_8b folder) and
# XTUNER_EXT_DATA_ROOT (the folder holding personal_assistant.json).
# Settings: XTuner's internlm2_chat_1_8b_qlora_alpaca_e3 with the tutorial's changes
# (max_length 1024, 2 epochs, OpenAI `messages` data, a checkpoint every 300 iterations, keep 3).
custom_imports = dict(imports=['xtuner_ext'], allow_failed_imports=False)
_base_ = ['../_runtime.py',  # hooks, environment, logging, visualizer (shared with configs/llava/)
          '../../hooks/before_after_chat.py']  # the before/after chat report (BeforeAfterChatHook)

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
model_path = '{{$XTUNER_EXT_MODEL_PATH:./models/internlm2-chat-1_8b}}'
data_root = '{{$XTUNER_EXT_DATA_ROOT:./data}}'
data_path = data_root + '/personal_assistant.json'  # written by tools/make_assistant_data.py
# PROMPT_TEMPLATE.internlm2_chat of XTuner, spelled out (InternLM2-chat's own chat format).
prompt_template = dict(
    SYSTEM='<|im_start|>system\n{system}<|im_end|>\n',
    INSTRUCTION='<|im_start|>user\n{input}<|im_end|>\n<|im_start|>assistant\n',
    SUFFIX='<|im_end|>',
    SUFFIX_AS_EOS=True,
    SEP='\n',
    STOP_WORDS=['<|im_end|>'])
max_length = 1024  # tutorial value (stock: 2048): one Q/A is ~40 tokens
pack_to_max_length = True  # ~25 records per 1024-token sample

batch_size = 1  # per device
accumulative_counts = 16  # 16 packed samples per optimizer step
dataloader_num_workers = 0
max_epochs = 2  # tutorial value (stock: 3)
lr = 2e-4
betas = (0.9, 0.999)
weight_decay = 0
max_norm = 1  # grad clip
warmup_ratio = 0.03

save_steps = 300  # tutorial value: compare iter_300 with iter_600 (overfitting shows by then)
save_total_limit = 3
seed = 42

# Questions for the before/after comparison (the tutorial's); system prompt of that comparison.
evaluation_inputs = ['请你介绍一下你自己', '你是谁', '你是我的小助手吗']
SYSTEM = ''  # the training data has no system turn

#######################################################################
#                   PART 2  Model & Tokenizer                         #
#######################################################################
tokenizer = dict(type='xtuner_ext.models.internlm2.internlm2_tokenizer',
                 pretrained_model_name_or_path=model_path)

model = dict(
    type='xtuner.model.SupervisedFinetune',
    use_varlen_attn=False,
    llm=dict(
        type='xtuner_ext.models.internlm2.build_internlm2',  # official folder, no remote code
        pretrained_model_name_or_path=model_path,
        torch_dtype='auto',  # bf16 on GPU (stock: fp16), fp32 on CPU
        quantization=dict(quant_type='nf4', double_quant=True, compute_dtype='auto',
                          skip_modules=['lm_head'])),  # the output head stays unquantized
    lora=dict(
        type='peft.LoraConfig',
        r=64,
        lora_alpha=16,
        lora_dropout=0.1,
        bias='none',
        # InternLM2's wqkv/wo/w1/w3/w2 under their native (Llama) names; never the head
        target_modules=['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
        task_type='CAUSAL_LM'),
)

#######################################################################
#                      PART 3  Dataset & Dataloader                   #
#######################################################################
train_dataset = dict(
    type='xtuner.dataset.process_hf_dataset',
    dataset=dict(type='datasets.load_dataset', path='json', data_files=dict(train=data_path)),
    tokenizer=tokenizer,
    max_length=max_length,
    dataset_map_fn='xtuner.dataset.map_fns.openai_map_fn',
    template_map_fn=dict(type='xtuner.dataset.map_fns.template_map_fn_factory', template=prompt_template),
    remove_unused_columns=True,
    shuffle_before_pack=True,
    pack_to_max_length=pack_to_max_length,
    use_varlen_attn=False)

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=dataloader_num_workers,
    dataset=train_dataset,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='xtuner.dataset.collate_fns.default_collate_fn', use_varlen_attn=False))

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
# greedy answers to evaluation_inputs and to the first training record before training, at each
# checkpoint and after, the prompt built from prompt_template + SYSTEM as stock EvaluateChatHook does.
custom_hooks = [
    dict(type='RandomStateHook'),  # exact --resume (LoRA dropout)
    dict(_base_.before_after_chat_hook, evaluation_inputs=evaluation_inputs, train_data=data_path, train_items=1,
         tokenizer=tokenizer, prompt_template=prompt_template, system=SYSTEM, every_n_iters=save_steps),
]
default_hooks = dict(checkpoint=dict(interval=save_steps, max_keep_ckpts=save_total_limit))
randomness = dict(seed=seed)
