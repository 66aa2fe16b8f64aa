"""Padding-free training: several samples packed into one row, each attending only to itself.

A packed row is the samples' tokens end to end, with ``position_ids`` restarting at 0 for each
sample and ``cu_seqlens`` (``[0, n1, n1+n2, ...]``) marking where each one starts. Attention runs
as one causal SDPA call per sample (the flash kernel on a GPU), so a packed row computes exactly
what the same samples compute right-padded in a batch, without the padding.

transformers 4.48's decoder loop drops attention keyword arguments under gradient checkpointing,
so :func:`run_packed_decoder` runs the layers itself and hands them the sample bounds; the
attention modules dispatch through :data:`PACKED_SDPA`, which is plain transformers SDPA whenever
no bounds are given (batches, generation).
"""
from __future__ import annotations

import copy
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

PACKED_SDPA = 'xtuner_ext_packed_sdpa'


def packed_sdpa_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                          attention_mask: Optional[torch.Tensor], dropout: float = 0.0,
                          scaling: Optional[float] = None, packed_bounds: Optional[Sequence[int]] = None, **kwargs):
    """transformers' attention-function signature; ``packed_bounds`` = ``cu_seqlens`` as ints."""
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    if packed_bounds is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    if query.shape[0] != 1 or packed_bounds[-1] != query.shape[2]:
        raise ValueError(f'a packed batch is one row whose length is cu_seqlens[-1]; got {query.shape[0]} row(s) of '
                         f'{query.shape[2]} tokens and cu_seqlens ending at {packed_bounds[-1]}')
    groups = getattr(module, 'num_key_value_groups', 1)
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    outputs = [F.scaled_dot_product_attention(query[:, :, s:e], key[:, :, s:e], value[:, :, s:e], dropout_p=dropout,
                                              scale=scaling, is_causal=True)
               for s, e in zip(packed_bounds[:-1], packed_bounds[1:])]
    return torch.cat(outputs, dim=2).transpose(1, 2).contiguous(), None


def enable_packed_attention(language_model: nn.Module) -> None:
    """Let every attention layer take packed rows (unchanged for everything else).

    Only the attention layers see the new implementation name, through a copy of the config:
    the decoder keeps ``'sdpa'``, so its causal-mask logic for ordinary batches does not change.
    """
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    ALL_ATTENTION_FUNCTIONS[PACKED_SDPA] = packed_sdpa_attention
    attentions = [m for name, m in language_model.named_modules() if name.endswith('self_attn')]
    if not attentions:
        raise ValueError(f'{type(language_model).__name__} has no `self_attn` layers: packing supports the '
                         'transformers Llama/Qwen2/Phi-3 decoders InternVL2 uses')
    config = attentions[0].config
    if config._attn_implementation not in ('sdpa', PACKED_SDPA):
        raise ValueError(f"packed attention replaces SDPA; this LLM uses {config._attn_implementation!r} (build it "
                         "with attn_implementation='sdpa')")
    packed_config = copy.copy(config)
    packed_config._attn_implementation = PACKED_SDPA
    for attention in attentions:
        attention.config = packed_config


def run_packed_decoder(decoder: nn.Module, inputs_embeds: torch.Tensor, position_ids: torch.Tensor,
                       cu_seqlens: torch.Tensor) -> torch.Tensor:
    """The decoder stack (a transformers ``*Model``) over one packed row -> final hidden states.

    Layers are recomputed in backward when the decoder has gradient checkpointing on.
    """
    bounds = tuple(int(b) for b in cu_seqlens.tolist())  # one host sync per step, not per layer
    hidden = inputs_embeds
    position_embeddings = decoder.rotary_emb(hidden, position_ids)
    recompute = decoder.gradient_checkpointing and decoder.training and torch.is_grad_enabled()
    for layer in decoder.layers[:decoder.config.num_hidden_layers]:
        kwargs = dict(position_ids=position_ids, position_embeddings=position_embeddings, packed_bounds=bounds)
        if recompute:
            hidden = checkpoint(layer, hidden, use_reentrant=False, **kwargs)[0]
        else:
            hidden = layer(hidden, **kwargs)[0]
    return decoder.norm(hidden)
