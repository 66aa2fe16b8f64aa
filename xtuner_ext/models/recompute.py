"""Recomputation granularity: checkpoint only some decoder layers, and keep their attention output.

Full recomputation re-runs every layer's forward in backward (about a fifth of a step); keeping
every layer's activations instead costs several GiB per layer at 16 CLoT samples. Recomputing the
first ``n`` layers and keeping the rest trades the two in between: time saved and memory spent
grow linearly with the layers kept. Gradients are identical either way.

Within a recomputed layer, the attention kernel is the costliest op per byte of output: its output
(and softmax statistics) is one hidden-size vector per token, a small part of what the whole layer
keeps, while re-running it is about a seventh of the layer's forward at 6656-token samples.
``keep_attention`` saves those outputs in forward (torch's selective checkpointing) and recomputes
the rest; the attention backward then gets the same tensors it would have recomputed.

The choice is a flag on each layer, honoured by transformers' own checkpointing loop (padded
batches, through the decoder's ``_gradient_checkpointing_func``) and by
``packed_attention.run_packed_decoder`` (packed rows), both through :func:`recompute_layer`.
"""
from __future__ import annotations

import functools
import importlib
from typing import Optional

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint, create_selective_checkpoint_contexts

_FLAG = 'xtuner_ext_recompute'
_KEEP_ATTENTION = 'xtuner_ext_keep_attention'
# SDPA's fused kernels (CUDA: cuDNN, flash, memory-efficient; CPU: flash) and torch's varlen op
_SDPA_OPS = ('_scaled_dot_product_cudnn_attention', '_scaled_dot_product_flash_attention',
             '_scaled_dot_product_efficient_attention', '_scaled_dot_product_flash_attention_for_cpu')


def is_recomputed(layer: nn.Module) -> bool:
    return getattr(layer, _FLAG, True)


@functools.lru_cache(maxsize=1)
def attention_ops() -> tuple:
    """The attention ops whose outputs a recomputed layer keeps (those this torch has)."""
    ops = [getattr(torch.ops.aten, name).default for name in _SDPA_OPS if hasattr(torch.ops.aten, name)]
    try:
        importlib.import_module('torch.nn.attention.varlen')  # registers torch.ops.torch_attn
        ops.append(torch.ops.torch_attn._varlen_attn.default)
    except (ImportError, AttributeError, RuntimeError):
        pass
    return tuple(ops)


def recompute_layer(layer, *args, **kwargs):
    """``layer(*args, **kwargs)`` under non-reentrant checkpointing, keeping the attention outputs
    when the layer's flag says so."""
    function = layer.__call__ if isinstance(layer, nn.Module) else layer
    owner = getattr(function, '__self__', layer)
    if getattr(owner, _KEEP_ATTENTION, False):
        kwargs['context_fn'] = functools.partial(create_selective_checkpoint_contexts, list(attention_ops()))
    return checkpoint(function, *args, use_reentrant=False, **kwargs)


def _selective_checkpoint(function, *args, **kwargs):
    """transformers calls ``_gradient_checkpointing_func(layer.__call__, ...)``: run layers whose
    flag is off directly, checkpoint the rest."""
    layer = getattr(function, '__self__', None)
    if layer is not None and not is_recomputed(layer):
        return function(*args, **kwargs)
    return recompute_layer(function, *args, **kwargs)


def select_recomputed_layers(decoder: nn.Module, count: Optional[int], keep_attention: bool = False) -> None:
    """Recompute the first ``count`` layers of a transformers decoder (``None``: all of them),
    keeping their attention outputs if ``keep_attention``. Call after ``gradient_checkpointing_enable``
    (which resets the checkpointing function)."""
    layers = decoder.layers
    count = len(layers) if count is None else count
    if not 0 <= count <= len(layers):
        raise ValueError(f'recompute_llm_layers must be between 0 and the {len(layers)} decoder layers (or None for '
                         f'all), got {count}')
    for index, layer in enumerate(layers):
        setattr(layer, _FLAG, index < count)
        setattr(layer, _KEEP_ATTENTION, keep_attention)
    decoder._gradient_checkpointing_func = _selective_checkpoint
