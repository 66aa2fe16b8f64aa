"""Padding-free training: several samples packed into one row, each attending only to itself.

A packed row is the samples' tokens end to end, with ``position_ids`` restarting at 0 for each
sample and ``cu_seqlens`` (``[0, n1, n1+n2, ...]``) marking where each one starts. Attention runs
either as one variable-length flash call over the whole row (``'varlen'``: torch's
``torch.nn.attention.varlen``, CUDA, bf16/fp16) or as one causal SDPA call per sample on
``torch.split`` views (``'split'``: any device; its backward is one concatenation per tensor,
where per-sample slicing zero-filled a full-size gradient for every sample). Both compute exactly
what the same samples compute right-padded in a batch, without the padding. ``'cudnn'`` is split
with cuDNN's attention preferred (SDPA falls back to its other kernels where cuDNN cannot run a
call) and the key/value heads shared (``enable_gqa``) instead of repeated: on an H200 it runs causal
attention at 6656 tokens at 1.9x torch's flash kernel (a 4 x 6656 training step 1.3% faster and 0.5 GiB
smaller with the heads shared than repeated; slower than varlen on short CLoT rows). ``'auto'``
takes varlen where it runs, split elsewhere (the CPU, fp32, attention dropout, torch < 2.10).

transformers 4.48's decoder loop drops attention keyword arguments under gradient checkpointing,
so :func:`run_packed_decoder` runs the layers itself and hands them a :class:`PackedRow`; the
attention modules dispatch through :data:`PACKED_SDPA`, which is plain transformers SDPA whenever
no row is given (batches, generation).
"""
from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import warnings
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from xtuner_ext.models.recompute import is_recomputed, recompute_layer

PACKED_SDPA = 'xtuner_ext_packed_sdpa'
PACKED_KERNELS = ('auto', 'varlen', 'split', 'cudnn')


@dataclass(frozen=True)
class PackedRow:
    """Sample bounds of one packed row: host ints (for splitting) and the int32 device tensor and
    longest sample that a varlen kernel takes. Built once per step, shared by every layer.
    ``varlen_failure``: why the varlen kernel failed its probe on this GPU (None: it passed, or
    was not tried)."""
    bounds: Tuple[int, ...]
    cu_seqlens: torch.Tensor
    max_length: int
    varlen_failure: Optional[str] = None

    @classmethod
    def from_cu_seqlens(cls, cu_seqlens: torch.Tensor, device: torch.device,
                        varlen_failure: Optional[str] = None) -> 'PackedRow':
        bounds = tuple(int(b) for b in cu_seqlens.tolist())  # one host sync per step, not per layer
        lengths = [e - s for s, e in zip(bounds[:-1], bounds[1:])]
        return cls(bounds, cu_seqlens.to(device=device, dtype=torch.int32), max(lengths, default=0), varlen_failure)

    @property
    def lengths(self) -> Tuple[int, ...]:
        return tuple(e - s for s, e in zip(self.bounds[:-1], self.bounds[1:]))


@dataclass(frozen=True)
class _Varlen:
    function: object
    causal: dict  # the keywords that make it causal
    takes_scale: bool
    takes_gqa: bool  # fewer key/value heads than query heads, without repeating them


@functools.lru_cache(maxsize=1)
def _varlen_function() -> Optional[_Varlen]:
    """torch's varlen attention as this torch spells it, or None (torch < 2.10). torch 2.10/2.11
    take ``is_causal=True``; 2.12+ ``window_size=(-1, 0)``, ``scale`` and ``enable_gqa``."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    parameters = inspect.signature(varlen_attn).parameters
    if 'window_size' in parameters:
        causal = dict(window_size=(-1, 0))
    elif 'is_causal' in parameters:
        causal = dict(is_causal=True)
    else:
        return None
    return _Varlen(varlen_attn, causal, 'scale' in parameters, 'enable_gqa' in parameters)


def varlen_unavailable_reason(query: torch.Tensor, dropout: float, scaling: Optional[float]) -> Optional[str]:
    """Why the varlen kernel cannot run this call (None: it can)."""
    found = _varlen_function()
    if found is None:
        return f'torch {torch.__version__} has no torch.nn.attention.varlen.varlen_attn (torch >= 2.10 has)'
    if not query.is_cuda or query.dtype not in (torch.float16, torch.bfloat16):
        return f'varlen attention needs CUDA bf16/fp16 tensors, got {query.device.type} {query.dtype}'
    if dropout:
        return f'varlen attention has no attention dropout (got {dropout})'
    default_scale = query.shape[-1] ** -0.5
    if not found.takes_scale and scaling is not None and abs(scaling - default_scale) > 1e-12:
        return f'this torch varlen_attn has no scale argument and the model scales by {scaling}'
    return None


@functools.lru_cache(maxsize=None)
def _varlen_probe_failure(device: torch.device, dtype: torch.dtype, head_dim: int) -> Optional[str]:
    """Run the kernel once, forward and backward, on a tiny packed row (this GPU, dtype, head size):
    the error text if it fails (an old GPU, a torch build without the backward), else None. Runs
    before the layers (outside any checkpointed region, whose saved-tensor hooks it would meet)."""
    generator = torch.Generator(device=device).manual_seed(0)
    q, k, v = (torch.randn(1, 2, 8, head_dim, device=device, dtype=dtype, generator=generator).requires_grad_()
               for _ in range(3))
    row = PackedRow.from_cu_seqlens(torch.tensor([0, 3, 8]), device)
    try:
        with torch.enable_grad():
            torch.autograd.grad(_varlen_attention(q, k, v, row, 1, head_dim ** -0.5).float().sum(), (q, k, v))
    except Exception as err:  # noqa: BLE001  (reported: 'auto' says why it falls back, 'varlen' raises it)
        return f'the varlen kernel failed on a tiny row: {type(err).__name__}: {err}'[:500]
    return None


def _varlen_attention(query, key, value, row: PackedRow, groups: int, scaling: Optional[float]) -> torch.Tensor:
    """``[1, H, T, D]`` -> ``[1, T, H, D]`` in one kernel call (GQA keys/values repeated where
    this torch's kernel cannot share them)."""
    varlen = _varlen_function()
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # [T, H, D]: how q/k/v lie in memory
    extra = dict(varlen.causal)
    if varlen.takes_scale and scaling is not None:
        extra['scale'] = scaling
    if groups > 1 and varlen.takes_gqa:
        extra['enable_gqa'] = True
    elif groups > 1:
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)  # = transformers' repeat_kv
    out = varlen.function(q.contiguous(), k.contiguous(), v.contiguous(), row.cu_seqlens, row.cu_seqlens,
                          row.max_length, row.max_length, **extra)
    return out[None]


def _split_attention(query, key, value, row: PackedRow, groups: int, scaling: Optional[float],
                     dropout: float, prefer_cudnn: bool = False) -> torch.Tensor:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from transformers.integrations.sdpa_attention import repeat_kv

    extra = {}
    if prefer_cudnn and groups > 1:
        extra['enable_gqa'] = True
    else:
        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    lengths = row.lengths
    backends = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                SDPBackend.MATH]
    with sdpa_kernel(backends, set_priority=True) if prefer_cudnn else contextlib.nullcontext():
        outputs = [F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=scaling, is_causal=True, **extra)
                   for q, k, v in zip(query.split(lengths, 2), key.split(lengths, 2), value.split(lengths, 2))]
    return torch.cat(outputs, dim=2).transpose(1, 2).contiguous()


def packed_sdpa_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                          attention_mask: Optional[torch.Tensor], dropout: float = 0.0,
                          scaling: Optional[float] = None, packed_row: Optional[PackedRow] = None, **kwargs):
    """transformers' attention-function signature, plus ``packed_row`` for a packed batch."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if packed_row is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    if query.shape[0] != 1 or packed_row.bounds[-1] != query.shape[2]:
        raise ValueError(f'a packed batch is one row whose length is cu_seqlens[-1]; got {query.shape[0]} row(s) of '
                         f'{query.shape[2]} tokens and cu_seqlens ending at {packed_row.bounds[-1]}')
    groups = getattr(module, 'num_key_value_groups', 1)
    kernel = getattr(module.config, 'packed_kernel', 'auto')
    if kernel == 'cudnn':
        return _split_attention(query, key, value, packed_row, groups, scaling, dropout, prefer_cudnn=True), None
    reason = 'split requested' if kernel == 'split' else (
        varlen_unavailable_reason(query, dropout, scaling) or packed_row.varlen_failure)
    if kernel == 'varlen' and reason:
        raise RuntimeError(f"packed_attention='varlen' cannot run here: {reason}; use 'auto' or 'split'")
    if kernel == 'auto' and reason and query.is_cuda:
        _warn_once(f"packed_attention='auto' runs per-sample SDPA on this GPU: {reason}")
    if reason is None:
        return _varlen_attention(query, key, value, packed_row, groups, scaling), None
    return _split_attention(query, key, value, packed_row, groups, scaling, dropout), None


@functools.lru_cache(maxsize=None)
def _warn_once(message: str) -> None:
    warnings.warn(message)


def enable_packed_attention(language_model: nn.Module, kernel: str = 'auto') -> None:
    """Let every attention layer take packed rows (unchanged for everything else).

    Only the attention layers see the new implementation name, through a copy of the config:
    the decoder keeps ``'sdpa'``, so its causal-mask logic for ordinary batches does not change.
    """
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    if kernel not in PACKED_KERNELS:
        raise ValueError(f'packed_attention must be one of {PACKED_KERNELS}, got {kernel!r}')
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
    packed_config.packed_kernel = kernel
    for attention in attentions:
        attention.config = packed_config


def _probe_for(decoder: nn.Module, inputs_embeds: torch.Tensor) -> Optional[str]:
    """The varlen probe's verdict for the attention dtype this forward will run (once per GPU/dtype)."""
    device = inputs_embeds.device
    kernel = getattr(decoder.layers[0].self_attn.config, 'packed_kernel', 'auto')
    autocast = torch.is_autocast_enabled(device.type)
    dtype = torch.get_autocast_dtype(device.type) if autocast else inputs_embeds.dtype
    if kernel == 'split' or device.type != 'cuda' or dtype not in (torch.float16, torch.bfloat16) \
            or _varlen_function() is None:
        return None
    config = decoder.config
    head_dim = getattr(config, 'head_dim', None) or config.hidden_size // config.num_attention_heads
    return _varlen_probe_failure(device, dtype, head_dim)


def run_packed_decoder(decoder: nn.Module, inputs_embeds: torch.Tensor, position_ids: torch.Tensor,
                       cu_seqlens: torch.Tensor) -> torch.Tensor:
    """The decoder stack (a transformers ``*Model``) over one packed row -> final hidden states.

    With gradient checkpointing on, the layers ``recompute.py`` selects (all by default) are
    recomputed in backward; the others keep their activations.
    """
    row = PackedRow.from_cu_seqlens(cu_seqlens, inputs_embeds.device, _probe_for(decoder, inputs_embeds))
    hidden = inputs_embeds
    position_embeddings = decoder.rotary_emb(hidden, position_ids)
    recompute = decoder.gradient_checkpointing and decoder.training and torch.is_grad_enabled()
    for layer in decoder.layers[:decoder.config.num_hidden_layers]:
        kwargs = dict(position_ids=position_ids, position_embeddings=position_embeddings, packed_row=row)
        if recompute and is_recomputed(layer):
            hidden = recompute_layer(layer, hidden, **kwargs)[0]
        else:
            hidden = layer(hidden, **kwargs)[0]
    return decoder.norm(hidden)
