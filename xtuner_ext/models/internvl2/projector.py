"""Vision-to-language bridge: pixel shuffle (token merge) and the ``mlp1`` projector."""
from __future__ import annotations

import warnings

import torch
from torch import nn


def pixel_shuffle(x: torch.Tensor, scale_factor: float = 0.5, ps_version: str = 'v2') -> torch.Tensor:
    """Merge ``1/scale`` x ``1/scale`` neighbouring patches into one token with ``1/scale**2`` the channels.

    ``x`` is ``[N, W, H, C]``. ``v1`` leaves width and height transposed (an official bug kept for
    old checkpoints); ``v2`` swaps them back.
    """
    n, w, h, c = x.shape
    x = x.reshape(n, w, int(h * scale_factor), int(c / scale_factor))
    x = x.permute(0, 2, 1, 3).reshape(n, int(h * scale_factor), int(w * scale_factor),
                                      int(c / (scale_factor * scale_factor)))
    if ps_version == 'v1':
        warnings.warn("ps_version 'v1' keeps height and width transposed, as the official v1 checkpoints expect")
        return x
    return x.permute(0, 2, 1, 3).contiguous()


def build_mlp1(vit_hidden_size: int, llm_hidden_size: int, downsample_ratio: float) -> nn.Sequential:
    """``LayerNorm -> Linear -> GELU -> Linear``; indices 0/1/3 are the official ``mlp1.*`` keys."""
    merged = vit_hidden_size * int(1 / downsample_ratio) ** 2
    return nn.Sequential(
        nn.LayerNorm(merged),
        nn.Linear(merged, llm_hidden_size),
        nn.GELU(),
        nn.Linear(llm_hidden_size, llm_hidden_size),
    )


def vit_tokens_to_grid(vit_embeds: torch.Tensor) -> torch.Tensor:
    """Drop the class token and lay the patch tokens out as a square ``[N, side, side, C]`` grid."""
    patches = vit_embeds[:, 1:, :]
    side = int(patches.shape[1] ** 0.5)
    if side * side != patches.shape[1]:
        raise ValueError(f'{patches.shape[1]} patch tokens do not form a square grid')
    return patches.reshape(patches.shape[0], side, side, -1)
