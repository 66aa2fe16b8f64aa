"""LoRA's update added inside one GEMM: ``base(x) + scaling * B(A(dropout(x)))`` as
``torch.addmm(base(x), A(dropout(x)), B^T, alpha=scaling)``.

peft's 4-bit LoRA layer clones the base output ("defensively"), multiplies the adapter output by
``scaling`` and adds it: three extra passes over every adapted layer's output (23,040 columns per
InternLM2 layer), forward, recomputation and backward. ``addmm`` does the scaling and the sum in
the GEMM's epilogue (fp32 accumulation, one rounding instead of three). Same function, same
parameters, same dropout masks (one dropout call per layer, in the same order), so training is the
same; only the rounding differs.

Only the plain case is routed: one active adapter, unmerged, no DoRA or other variant, no LoRA
bias, and either autocast on or every dtype equal. Everything else (chat on a bf16 model with fp32
adapters, mixed-adapter batches) takes peft's own forward.
"""
from __future__ import annotations

import types

import torch
from torch import nn

_ON = 'xtuner_ext_lora_addmm'


def _plain_adapter(layer: nn.Module, x: torch.Tensor, args: tuple, kwargs: dict):
    """The active adapter when this call is the plain case, else None."""
    if args or kwargs or not getattr(layer, _ON) or layer.disable_adapters or layer.merged:
        return None
    adapters = layer.active_adapters
    if len(adapters) != 1 or adapters[0] not in layer.lora_A:
        return None
    adapter = adapters[0]
    if adapter in layer.lora_variant or layer.lora_bias.get(adapter):
        return None
    if not torch.is_autocast_enabled(x.device.type) and x.dtype != layer.lora_A[adapter].weight.dtype:
        return None
    return adapter


def _addmm_forward(layer: nn.Module, original, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    adapter = _plain_adapter(layer, x, args, kwargs)
    if adapter is None:
        return original(x, *args, **kwargs)
    result = layer.base_layer(x)
    if not torch.is_autocast_enabled(x.device.type) and result.dtype != x.dtype:
        return original(x, *args, **kwargs)
    hidden = layer.lora_A[adapter](layer.lora_dropout[adapter](x))
    out = torch.addmm(result.reshape(-1, result.shape[-1]), hidden.reshape(-1, hidden.shape[-1]),
                      layer.lora_B[adapter].weight.t(), alpha=layer.scaling[adapter])
    return out.view(result.shape)


def use_lora_addmm(model: nn.Module, enabled: bool = True) -> int:
    """Route every peft LoRA linear layer in ``model`` through :func:`_addmm_forward` (``enabled=False``:
    back to peft's forward). Returns how many layers were routed."""
    from peft.tuners.lora import LoraLayer

    layers = [m for m in model.modules() if isinstance(m, LoraLayer) and isinstance(m.get_base_layer(), nn.Linear)]
    for layer in layers:
        if not hasattr(layer, _ON):  # route once; the flag switches it
            layer.forward = types.MethodType(
                lambda self, x, *args, _original=layer.forward, **kwargs: _addmm_forward(self, _original, x, *args,
                                                                                         **kwargs), layer)
        setattr(layer, _ON, enabled)
    return len(layers)
