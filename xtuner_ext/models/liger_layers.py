"""Liger's fused Triton RMSNorm, SwiGLU and RoPE inside the LLM's decoder layers (CUDA tensors only).

transformers' Llama RMSNorm is seven elementwise kernels per call (an fp32 copy of the hidden
states among them, kept for backward), its MLP keeps both ``silu(gate)`` and ``gate``, and its
RoPE is a slice, a negation, a concatenation, two products and a sum for each of q and k; Liger
does each in one kernel with the same fp32 inverse-RMS ("llama" casting) and keeps less. The
modules and their weights stay as they are (same state dict, same names): only their ``forward``
changes, and it takes the original path for anything that is not a CUDA tensor (and whenever the
switch is off again), so chat and the CPU tests are untouched. InternLM2 (built as Llama) and
Qwen2 have these layers; Phi-3 fuses ``gate_up_proj`` and is refused.
"""
from __future__ import annotations

import contextvars
import sys
import types

import torch
from torch import nn

from xtuner_ext.boot import wrap_once

_ON = 'xtuner_ext_liger'
# transformers' attention calls its module's ``apply_rotary_pos_emb`` (a module-level function, not a
# layer): a routed attention layer marks its own call, so only routed layers of this model take Liger's.
_ROPE_IN_ROUTED_ATTENTION = contextvars.ContextVar('xtuner_ext_liger_rope', default=False)


def _rms_norm_forward(norm: nn.Module, original, hidden: torch.Tensor) -> torch.Tensor:
    if not (hidden.is_cuda and getattr(norm, _ON)):
        return original(hidden)
    from liger_kernel.ops import LigerRMSNormFunction

    # 'llama' casting: inverse RMS in fp32, normalised x back in the input dtype, times the weight;
    # not in place (the gradient of a norm's output is not ours to overwrite).
    return LigerRMSNormFunction.apply(hidden, norm.weight, norm.variance_epsilon, 0.0, 'llama', False)


def _swiglu_forward(mlp: nn.Module, original, x: torch.Tensor) -> torch.Tensor:
    if not (x.is_cuda and getattr(mlp, _ON)):
        return original(x)
    from liger_kernel.ops import LigerSiLUMulFunction

    return mlp.down_proj(LigerSiLUMulFunction.apply(mlp.gate_proj(x), mlp.up_proj(x)))


def _attention_forward(attention: nn.Module, original, *args, **kwargs):
    token = _ROPE_IN_ROUTED_ATTENTION.set(getattr(attention, _ON))
    try:
        return original(*args, **kwargs)
    finally:
        _ROPE_IN_ROUTED_ATTENTION.reset(token)


def _rope_wrapper(original):
    def apply_rotary_pos_emb(q, k, cos, sin, *args, **kwargs):
        if not (q.is_cuda and _ROPE_IN_ROUTED_ATTENTION.get()):
            return original(q, k, cos, sin, *args, **kwargs)
        from liger_kernel.transformers.rope import liger_rotary_pos_emb

        return liger_rotary_pos_emb(q, k, cos, sin, *args, **kwargs)
    return apply_rotary_pos_emb


def _check_layer(layer: nn.Module, config) -> None:
    mlp = layer.mlp
    if not all(hasattr(mlp, name) for name in ('gate_proj', 'up_proj', 'down_proj')):
        raise ValueError(f'liger_layers needs a gate/up/down MLP (Llama, InternLM2, Qwen2); {type(mlp).__name__} '
                         'has another layout (Phi-3 fuses gate_up_proj): set liger_layers=False')
    if getattr(config, 'hidden_act', None) not in ('silu', 'swish'):
        raise ValueError(f'liger_layers fuses SiLU x up; this LLM uses {config.hidden_act!r}: set liger_layers=False')
    for norm in (layer.input_layernorm, layer.post_attention_layernorm):
        if not hasattr(norm, 'variance_epsilon'):
            raise ValueError(f'liger_layers expects transformers RMSNorms, got {type(norm).__name__}')
    if not hasattr(sys.modules[type(layer.self_attn).__module__], 'apply_rotary_pos_emb'):
        raise ValueError(f'liger_layers replaces the apply_rotary_pos_emb that {type(layer.self_attn).__name__} '
                         'calls; its module has none: set liger_layers=False')


def _route(module: nn.Module, forward, enabled: bool) -> None:
    if not hasattr(module, _ON):  # route once; the flag switches it
        module.forward = types.MethodType(
            lambda self, *args, _original=module.forward, **kwargs: forward(self, _original, *args, **kwargs), module)
    setattr(module, _ON, enabled)


def use_liger_layers(decoder: nn.Module, enabled: bool = True) -> None:
    """Route every decoder layer's RMSNorms, MLP and RoPE (and the final norm) through Liger on CUDA
    (``enabled=False``: back to transformers' own code)."""
    if enabled:
        import liger_kernel  # noqa: F401  (fail at build time, not at the first step)

        for layer in decoder.layers:
            _check_layer(layer, decoder.config)
    for layer in decoder.layers:
        _route(layer.input_layernorm, _rms_norm_forward, enabled)
        _route(layer.post_attention_layernorm, _rms_norm_forward, enabled)
        _route(layer.mlp, _swiglu_forward, enabled)
        _route(layer.self_attn, _attention_forward, enabled)
        wrap_once(sys.modules[type(layer.self_attn).__module__], 'apply_rotary_pos_emb', _rope_wrapper)
    _route(decoder.norm, _rms_norm_forward, enabled)
