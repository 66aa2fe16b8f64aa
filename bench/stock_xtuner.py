"""Stock XTuner 0.2.0 ``InternVL_V1_5`` QLoRA on the same random-weight folder, for side-by-side timing.

Stock loads the model with ``trust_remote_code``, so it needs the official InternVL code, as a real
InternVL2-2B folder carries it: ``python tools/official_remote_code.py GIT_DIR`` flattens it into the
git-ignored ``.official/remote_code`` (pass ``--stock-code .official/remote_code``; its files are
copied into the model folder). ``--stock-code .official/internvl_chat`` (the repository's package,
which needs timm) also works: the folder then gets two one-line files of ours importing its classes.
Nothing official is committed.

Two changes make stock run at all, both from the device notes: a one-process ``gloo`` group (its
forward calls ``torch.distributed.get_rank()``) and the projector ``mlp1`` cast to fp32 (it stays
bf16 and trainable, and the fp16 grad scaler crashes on it at the first optimizer step).
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch

SHIMS = {
    'configuration_internvl_chat.py': 'from internvl.model.internvl_chat.configuration_internvl_chat import '
                                      'InternVLChatConfig  # noqa: F401\n',
    'modeling_internvl_chat.py': 'from internvl.model.internvl_chat.modeling_internvl_chat import '
                                 'InternVLChatModel  # noqa: F401\n',
}


def remote_code_folder(model_dir: Path, stock_code: Path, out: Path) -> Path:
    """A copy of ``model_dir`` (weights linked) whose ``auto_map`` modules are the official code."""
    flattened = (stock_code / 'modeling_internvl_chat.py').is_file()
    if not flattened and not (stock_code / 'internvl' / 'model' / 'internvl_chat').is_dir():
        raise FileNotFoundError(f'{stock_code} holds neither the flattened remote code nor internvl/model/'
                                'internvl_chat: run tools/official_remote_code.py GIT_DIR (see this module)')
    out.mkdir(parents=True, exist_ok=True)
    for item in model_dir.iterdir():
        target = out / item.name
        if not target.exists():
            target.symlink_to(item.resolve()) if item.suffix == '.safetensors' else shutil.copy(item, target)
    if flattened:
        for code in stock_code.glob('*.py'):
            shutil.copy(code, out / code.name)
        return out
    for name, text in SHIMS.items():
        (out / name).write_text(text, encoding='utf-8')
    if str(stock_code) not in sys.path:
        sys.path.insert(0, str(stock_code))
    return out


def init_single_process_group() -> None:
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group('gloo', init_method='tcp://127.0.0.1:29531', rank=0, world_size=1)


def build_stock(folder: Path, lora_r: int = 128, quantize: bool = True):
    """The stock recipe's model: frozen ViT and LLM, nf4 LLM, LoRA on every LLM linear, checkpointing."""
    from peft import LoraConfig
    from xtuner.model import InternVL_V1_5

    init_single_process_group()
    lora = dict(type=LoraConfig, r=lora_r, lora_alpha=2 * lora_r, lora_dropout=0.05, target_modules=None,
                task_type='CAUSAL_LM')
    model = InternVL_V1_5(str(folder), freeze_llm=True, freeze_visual_encoder=True, quantization_llm=quantize,
                          quantization_vit=False, llm_lora=lora)
    model.model.mlp1.float()
    model.train()  # as mmengine's runner does: checkpointing and LoRA dropout act only in training mode
    return model.to('cuda' if torch.cuda.is_available() else 'cpu')


def stock_batch(instances, device) -> dict:
    """Stock's input format for the same samples: right-padded ids, per-sample tile tensors."""
    from xtuner_ext.data.internvl2_dataset import internvl2_collate_fn

    data = internvl2_collate_fn(instances)['data']
    length = data['input_ids'].shape[1]
    position_ids = torch.arange(length).expand(len(instances), length)
    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    return dict(input_ids=data['input_ids'].to(device), labels=data['labels'].to(device),
                attention_mask=data['attention_mask'].to(device), position_ids=position_ids.to(device),
                pixel_values=[x['pixel_values'].to(device, dtype) for x in instances])
