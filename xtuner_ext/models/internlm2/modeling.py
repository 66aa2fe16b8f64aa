"""InternLM2 as a transformers ``LlamaForCausalLM``, read from (and written to) the official layout.

``build_internlm2`` is the ``llm=`` builder for stock XTuner's ``SupervisedFinetune`` and
``LLaVAModel``: nothing from the folder is executed (no ``trust_remote_code``), the weights are
loaded strictly, and QLoRA's 4-bit layers are made after loading (``models/quantization.py``), so
the same config runs on a CPU and a GPU. Its first argument keeps stock XTuner's name
``pretrained_model_name_or_path``, which XTuner's tools read from ``cfg.model.llm``.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Optional, Union

import torch
from transformers import GenerationConfig, LlamaForCausalLM, PreTrainedTokenizerBase

from xtuner_ext.models.internvl2.checkpoint import (check_state_dict, iter_checkpoint_tensors, save_checkpoint,
                                                    weight_files)
from xtuner_ext.models.internvl2.configuration import dtype_from_name, dtype_name
from xtuner_ext.models.internvl2.language import internlm2_as_llama_config, materialize_rotary_buffers
from xtuner_ext.models.internvl2.tokenizer import load_text_tokenizer
from xtuner_ext.models.quantization import quantize_linear_layers

from .checkpoint import internlm2_state_dict, llama_state_dict, read_internlm2_config

# Files of a checkpoint folder that hold weights; everything else (config, tokenizer, remote code
# of an official download) is copied unchanged by ``save_internlm2``.
WEIGHT_PATTERNS = ('model*.safetensors', 'model.safetensors.index.json', 'pytorch_model*.bin',
                   'pytorch_model.bin.index.json')
NATIVE_BUILDER_MARK = 'xtuner_ext_native_llm'  # stock XTuner must not read this folder with AutoConfig


def default_device() -> torch.device:
    return torch.device('cuda' if torch.cuda.is_available() else 'cpu')


def resolve_dtype(value, device: torch.device, checkpoint_dtype: Optional[str]) -> torch.dtype:
    """``'auto'``: bf16 on a GPU, fp32 on the CPU; ``None``: the checkpoint's own dtype."""
    if value == 'auto':
        return torch.bfloat16 if device.type == 'cuda' else torch.float32
    return dtype_from_name(value if value is not None else checkpoint_dtype)


def load_internlm2(path: Union[str, Path], torch_dtype=None, device: Union[str, torch.device] = 'cpu',
                   attn_implementation: str = 'sdpa') -> LlamaForCausalLM:
    """An official InternLM2 folder as ``LlamaForCausalLM`` (strict: every key, every shape)."""
    path = Path(path)
    config = read_internlm2_config(path)
    dtype = resolve_dtype(torch_dtype, torch.device(device), config.get('torch_dtype'))
    llama_config = internlm2_as_llama_config(config, attn_implementation)
    with torch.device('meta'):
        model = LlamaForCausalLM(llama_config)
    tensors = llama_state_dict(iter_checkpoint_tensors(path, dtype=dtype, device=device), config)
    check_state_dict({k: v.shape for k, v in model.state_dict().items()}, tensors, str(path))
    model.load_state_dict(tensors, strict=True, assign=True)
    materialize_rotary_buffers(model, torch.device(device))
    model.config.torch_dtype = dtype
    if (path / 'generation_config.json').is_file():
        model.generation_config = GenerationConfig.from_pretrained(str(path))
    model.name_or_path = str(path)
    return model.eval()


def build_internlm2(pretrained_model_name_or_path: str, torch_dtype='auto', quantization: Optional[dict] = None,
                    attn_implementation: str = 'sdpa', device: Optional[str] = None) -> LlamaForCausalLM:
    """The ``llm=`` builder of our configs: load, then (QLoRA) swap linear layers for 4-bit ones.

    ``quantization``: ``None`` or :class:`QuantizationSettings` fields as plain values, e.g.
    ``dict(quant_type='nf4', double_quant=True, compute_dtype='auto')``; the output head stays unquantized.
    """
    from xtuner_ext.models.internvl2_qlora import quantization_settings

    device = torch.device(device) if device else default_device()
    model = load_internlm2(pretrained_model_name_or_path, torch_dtype=torch_dtype, device='cpu',
                           attn_implementation=attn_implementation)
    settings = quantization_settings(quantization, device)
    if settings:
        quantize_linear_layers(model, settings, device)
    return model.to(device)


setattr(build_internlm2, NATIVE_BUILDER_MARK, True)


def internlm2_tokenizer(pretrained_model_name_or_path: str, **unused) -> PreTrainedTokenizerBase:
    """The official tokenizer of an InternLM2 folder, exactly, without remote code (``tokenizer=`` builder).
    Stock configs pass ``trust_remote_code``/``padding_side``; they change nothing here and are ignored."""
    return load_text_tokenizer(pretrained_model_name_or_path)


def save_internlm2(model: LlamaForCausalLM, path: Union[str, Path], base: Union[str, Path],
                   torch_dtype: Optional[str] = None) -> Path:
    """Write ``model`` in the official InternLM2 layout: ``base``'s non-weight files, official tensor names.

    The folder is written beside ``path`` and renamed into place, so it is never half-written.
    """
    path, base = Path(path), Path(base)
    config = read_internlm2_config(base)
    dtype = dtype_from_name(torch_dtype or config.get('torch_dtype'))
    tensors = internlm2_state_dict({k: v.detach().to('cpu', dtype) for k, v in model.state_dict().items()}, config)
    tmp = path.with_name(f'.{path.name}.tmp')
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(base, tmp, ignore=shutil.ignore_patterns(*WEIGHT_PATTERNS))
    if dtype_name(dtype) != config.get('torch_dtype'):
        _rewrite_config_dtype(tmp / 'config.json', dtype_name(dtype))
    save_checkpoint(tensors, tmp)
    weight_files(tmp)  # fail here, not in a user's loader, if nothing was written
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)
    return path


def _rewrite_config_dtype(file: Path, dtype: str) -> None:
    config = json.loads(file.read_text(encoding='utf-8'))
    config['torch_dtype'] = dtype
    file.write_text(json.dumps(config, indent=2, ensure_ascii=False) + '\n', encoding='utf-8')
