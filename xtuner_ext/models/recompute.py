"""Recomputation granularity: checkpoint only some decoder layers, and keep a few of their outputs.

Full recomputation re-runs every layer's forward in backward (about a fifth of a step); keeping
every layer's activations instead costs several GiB per layer at 16 CLoT samples. Recomputing the
first ``n`` layers and keeping the rest trades the two in between: time saved and memory spent
grow linearly with the layers kept. Gradients are identical either way.

Within a recomputed layer, a few ops cost far more to re-run than their outputs take to keep; torch's
selective checkpointing saves their outputs in forward and recomputes the rest, and backward gets the
same tensors it would have recomputed (``RECOMPUTE_KEEPS``):

- ``'attention'``: the attention kernel's output (and softmax statistics), one hidden-size vector per
  token; re-running it is about a seventh of the layer's forward at 6656-token samples.
- ``'down_proj'``: the GEMMs that contract over the MLP's intermediate size (the down projection and
  its LoRA A): one hidden-size vector per token for a quarter of the layer's GEMM FLOPs.

Measured at 4 x 6656 tokens (H200): whole layers kept save about 4.5 ms of step time per GiB they
hold, the attention outputs about 13.5, both outputs together about 10.

The choice is a flag on each layer, honoured by transformers' own checkpointing loop (padded
batches, through the decoder's ``_gradient_checkpointing_func``) and by
``packed_attention.run_packed_decoder`` (packed rows), both through :func:`recompute_layer`.
"""
from __future__ import annotations

import functools
import importlib
from typing import Optional, Sequence

import torch
from torch import nn
from torch.utils.checkpoint import CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts

_FLAG = 'xtuner_ext_recompute'
_KEEPS = 'xtuner_ext_recompute_keeps'
RECOMPUTE_KEEPS = ('attention', 'down_proj')
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


def _keep_policy(keeps: frozenset, intermediate_size: int):
    attention = attention_ops() if 'attention' in keeps else ()
    down_proj = 'down_proj' in keeps

    def policy(ctx, op, *args, **kwargs):
        if op in attention or (down_proj and op is torch.ops.aten.mm.default
                               and args[0].shape[-1] == intermediate_size):
            return CheckpointPolicy.MUST_SAVE
        return CheckpointPolicy.PREFER_RECOMPUTE
    return policy


def recompute_layer(layer, *args, **kwargs):
    """``layer(*args, **kwargs)`` under non-reentrant checkpointing, keeping the outputs
    :func:`select_recomputed_layers` chose for that layer."""
    function = layer.__call__ if isinstance(layer, nn.Module) else layer
    context_fn = getattr(getattr(function, '__self__', layer), _KEEPS, None)
    if context_fn is not None:
        kwargs['context_fn'] = context_fn
    return checkpoint(function, *args, use_reentrant=False, **kwargs)


def _selective_checkpoint(function, *args, **kwargs):
    """transformers calls ``_gradient_checkpointing_func(layer.__call__, ...)``: run layers whose
    flag is off directly, checkpoint the rest."""
    layer = getattr(function, '__self__', None)
    if layer is not None and not is_recomputed(layer):
        return function(*args, **kwargs)
    return recompute_layer(function, *args, **kwargs)


def select_recomputed_layers(decoder: nn.Module, count: Optional[int], keeps: Sequence[str] = ()) -> None:
    """Recompute the first ``count`` layers of a transformers decoder (``None``: all of them), keeping
    the outputs named in ``keeps`` (:data:`RECOMPUTE_KEEPS`). Call after ``gradient_checkpointing_enable``
    (which resets the checkpointing function)."""
    layers = decoder.layers
    count = len(layers) if count is None else count
    if not 0 <= count <= len(layers):
        raise ValueError(f'recompute_llm_layers must be between 0 and the {len(layers)} decoder layers (or None for '
                         f'all), got {count}')
    unknown = sorted(set(keeps) - set(RECOMPUTE_KEEPS))
    if unknown:
        raise ValueError(f'recompute_keeps: unknown {unknown}; choose from {list(RECOMPUTE_KEEPS)}')
    context_fn = functools.partial(create_selective_checkpoint_contexts,
                                   _keep_policy(frozenset(keeps), decoder.config.intermediate_size)) if keeps else None
    for index, layer in enumerate(layers):
        setattr(layer, _FLAG, index < count)
        setattr(layer, _KEEPS, context_fn)
    decoder._gradient_checkpointing_func = _selective_checkpoint
