"""Recomputation granularity: checkpoint only some decoder layers.

Full recomputation re-runs every layer's forward in backward (about a fifth of a step); keeping
every layer's activations instead costs several GiB per layer at 16 CLoT samples. Recomputing the
first ``n`` layers and keeping the rest trades the two in between: time saved and memory spent
grow linearly with the layers kept. Gradients are identical either way.

The choice is a flag on each layer, honoured by transformers' own checkpointing loop (padded
batches, through the decoder's ``_gradient_checkpointing_func``) and by
``packed_attention.run_packed_decoder`` (packed rows).
"""
from __future__ import annotations

from typing import Optional

from torch import nn
from torch.utils.checkpoint import checkpoint

_FLAG = 'xtuner_ext_recompute'


def is_recomputed(layer: nn.Module) -> bool:
    return getattr(layer, _FLAG, True)


def _selective_checkpoint(function, *args, **kwargs):
    """transformers calls ``_gradient_checkpointing_func(layer.__call__, ...)``: run layers whose
    flag is off directly, checkpoint the rest (non-reentrant, as the model's default)."""
    layer = getattr(function, '__self__', None)
    if layer is not None and not is_recomputed(layer):
        return function(*args, **kwargs)
    return checkpoint(function, *args, use_reentrant=False, **kwargs)


def select_recomputed_layers(decoder: nn.Module, count: Optional[int]) -> None:
    """Recompute the first ``count`` layers of a transformers decoder (``None``: all of them).
    Call after ``gradient_checkpointing_enable`` (which resets the checkpointing function)."""
    layers = decoder.layers
    count = len(layers) if count is None else count
    if not 0 <= count <= len(layers):
        raise ValueError(f'recompute_llm_layers must be between 0 and the {len(layers)} decoder layers (or None for '
                         f'all), got {count}')
    for index, layer in enumerate(layers):
        setattr(layer, _FLAG, index < count)
    decoder._gradient_checkpointing_func = _selective_checkpoint
