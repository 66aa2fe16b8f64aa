"""4-bit quantization of a loaded model's linear layers with bitsandbytes, on CPU and GPU alike.

transformers 4.48's ``from_pretrained(quantization_config=...)`` crashes on CPU-only machines with
bitsandbytes >= 0.48, and it only quantizes while loading. Swapping ``nn.Linear`` for
``bnb.nn.Linear4bit`` after the (bf16/fp32) weights are loaded works on both devices, one layer at
a time, so peak memory is the unquantized model plus one layer.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterable, List

import torch
from torch import nn


@dataclass(frozen=True)
class QuantizationSettings:
    """What ``BitsAndBytesConfig(load_in_4bit=True, ...)`` would say, as plain values for configs."""

    quant_type: str = 'nf4'
    double_quant: bool = True
    compute_dtype: torch.dtype = torch.bfloat16
    quant_storage: torch.dtype = torch.uint8
    skip_modules: tuple = ('lm_head',)

    def __post_init__(self):
        if self.quant_type not in ('nf4', 'fp4'):
            raise ValueError(f"quant_type must be 'nf4' or 'fp4', got {self.quant_type!r}")


def _linear_names(module: nn.Module, skip: Iterable[str]) -> List[str]:
    skip = tuple(skip)
    return [name for name, child in module.named_modules()
            if isinstance(child, nn.Linear) and not any(name == s or name.endswith('.' + s) for s in skip)]


def _quantized_copy(linear: nn.Linear, settings: QuantizationSettings, device: torch.device) -> nn.Module:
    import bitsandbytes as bnb

    layer = bnb.nn.Linear4bit(linear.in_features, linear.out_features, bias=linear.bias is not None,
                              compute_dtype=settings.compute_dtype, compress_statistics=settings.double_quant,
                              quant_type=settings.quant_type, quant_storage=settings.quant_storage,
                              device='meta')
    layer.weight = bnb.nn.Params4bit(linear.weight.data.to('cpu'), requires_grad=False,
                                     compress_statistics=settings.double_quant, quant_type=settings.quant_type,
                                     quant_storage=settings.quant_storage, module=layer)
    if linear.bias is not None:
        layer.bias = nn.Parameter(linear.bias.data.to(settings.compute_dtype), requires_grad=False)
    return layer.to(device)  # Params4bit quantizes when it is moved to a device


def quantize_linear_layers(module: nn.Module, settings: QuantizationSettings,
                           device: torch.device | str = 'cpu') -> List[str]:
    """Replace every ``nn.Linear`` under ``module`` (except ``settings.skip_modules``) by a 4-bit
    ``bnb.nn.Linear4bit`` on ``device``; returns the replaced names."""
    device = torch.device(device)
    names = _linear_names(module, settings.skip_modules)
    if not names:
        raise ValueError(f'no nn.Linear layers to quantize in {type(module).__name__} '
                         f'(skip_modules={settings.skip_modules})')
    for name in names:
        parent_name, _, child_name = name.rpartition('.')
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, child_name, _quantized_copy(getattr(parent, child_name), settings, device))
    return names


@contextlib.contextmanager
def eval_mode_keeping_4bit(module: nn.Module):
    """Eval mode inside (no dropout), each submodule's own flag restored after (a model can be in a
    mixed state: from_pretrained leaves an inner model in eval while peft's LoRA dropouts train).

    4-bit layers keep their training flag: in eval mode on a CPU with AVX512-BF16, bitsandbytes
    repacks their weights for inference once and for all, and training afterwards (evaluation between
    iterations, as the before/after hook does) would backpropagate through a kernel without autograd."""
    import bitsandbytes as bnb

    modes = [(m, m.training) for m in module.modules()]
    for m in module.modules():
        m.training = isinstance(m, bnb.nn.Linear4bit) and m.training
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training
