# InternVL2-4B (Phi-3-mini-128k-instruct) LoRA, settings of stock internvl_v2_phi3_4b_lora_finetune.py.
#
#   NPROC_PER_NODE=8 xtuner train xtuner_ext_internvl2_4b_lora --deepspeed deepspeed_zero1

_base_ = ['./internvl2_2b_lora.py']

model_path = '{{$XTUNER_EXT_MODEL_PATH:./models/InternVL2-4B}}'
# Phi-3's fused projections under their own names; never lm_head or the embeddings
llm_lora_targets = ['qkv_proj', 'o_proj', 'gate_up_proj', 'down_proj']

model = dict(model_path=model_path, llm_lora=dict(target_modules=llm_lora_targets))

train_dataset = dict(model_path=model_path)
train_dataloader = dict(dataset=train_dataset)
