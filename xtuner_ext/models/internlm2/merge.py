"""Merge a trained LoRA adapter into the InternLM2 it was trained on, and write the official layout.

The adapter is the folder stock ``xtuner convert pth_to_hf`` writes. The base is loaded unquantized
(QLoRA trained against 4-bit weights, but the released model is the full-precision base plus the
LoRA update, as XTuner's own ``merge`` does) and the result is saved with the base's config,
tokenizer and dtype, so the InternLM tools, LMDeploy and our native loader read it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import torch
from transformers import LlamaForCausalLM

from .modeling import load_internlm2, save_internlm2


def merged_internlm2(base: Union[str, Path], adapter: Union[str, Path]) -> LlamaForCausalLM:
    """``base`` (fp32) with ``adapter`` merged in; ``ValueError`` if the adapter does not fit."""
    from peft import PeftModel

    adapter = Path(adapter)
    if not (adapter / 'adapter_config.json').is_file():
        raise FileNotFoundError(f'{adapter} has no adapter_config.json: pass the folder that '
                                '`xtuner convert pth_to_hf CONFIG iter_N.pth FOLDER` wrote')
    model = load_internlm2(base, torch_dtype=torch.float32)
    peft_model = PeftModel.from_pretrained(model, str(adapter), is_trainable=False)
    _check_adapter_loaded(peft_model, adapter)
    return peft_model.merge_and_unload().eval()


def _check_adapter_loaded(peft_model, adapter: Path) -> None:
    """peft warns and carries on when adapter keys miss the model; a merge must not."""
    lora_params = [name for name, _ in peft_model.named_parameters() if '.lora_' in name]
    if not lora_params:
        raise ValueError(f'{adapter}: no LoRA layer matched the base model (were its target_modules '
                         'the native Llama names q_proj, k_proj, ...?)')
    untouched = [name for name, p in peft_model.named_parameters() if '.lora_B.' in name and not p.any()]
    if len(untouched) == len([n for n in lora_params if '.lora_B.' in n]):
        raise ValueError(f'{adapter}: every LoRA B matrix is zero after loading: the adapter weights did not load '
                         '(wrong base model, or an untrained adapter)')


def merge_internlm2_adapter(base: Union[str, Path], adapter: Union[str, Path], out_dir: Union[str, Path],
                            torch_dtype: Optional[str] = None) -> Path:
    """Write ``base`` + ``adapter`` to ``out_dir`` in the official InternLM2 layout (``base``'s dtype by default)."""
    return save_internlm2(merged_internlm2(base, adapter), out_dir, base=base, torch_dtype=torch_dtype)
