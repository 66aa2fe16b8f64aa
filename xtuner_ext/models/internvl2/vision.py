"""InternViT, the InternVL2 vision tower, with SDPA attention and gradient checkpointing.

Module and parameter names equal the official ones (``embeddings.class_embedding``,
``encoder.layers.N.attn.qkv``, ``ls1`` ...), so the vision weights load with an identity key map.
Both official variants are supported: LayerNorm (InternViT-300M, InternVL2-1B..8B) and RMSNorm
with QK-normalisation (InternViT-6B).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers.activations import ACT2FN
from transformers.modeling_outputs import BaseModelOutputWithPooling

from .configuration import VisionConfig


class InternRMSNorm(nn.Module):
    """RMSNorm computed in float32, as the official ``InternRMSNorm``."""

    def __init__(self, hidden_size: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return self.weight * x.to(dtype)


def make_norm(config: VisionConfig, dim: int) -> nn.Module:
    if config.norm_type == 'rms_norm':
        return InternRMSNorm(dim, eps=config.layer_norm_eps)
    return nn.LayerNorm(dim, eps=config.layer_norm_eps)


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth: drop the whole residual branch per sample."""
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


class InternVisionEmbeddings(nn.Module):
    """Patch embedding + class token + learned positions (bicubic-resized for other grid sizes)."""

    def __init__(self, config: VisionConfig):
        super().__init__()
        self.embed_dim = config.hidden_size
        self.grid = config.image_size // config.patch_size
        self.class_embedding = nn.Parameter(torch.randn(1, 1, self.embed_dim))
        self.patch_embedding = nn.Conv2d(config.num_channels, self.embed_dim, kernel_size=config.patch_size,
                                         stride=config.patch_size)
        self.position_embedding = nn.Parameter(torch.randn(1, self.grid * self.grid + 1, self.embed_dim))

    def _patch_positions(self, height: int, width: int) -> torch.Tensor:
        pos = self.position_embedding[:, 1:, :]
        if (height, width) == (self.grid, self.grid):
            return pos
        grid = pos.float().reshape(1, self.grid, self.grid, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(height, width), mode='bicubic', align_corners=False)
        return grid.reshape(1, -1, height * width).permute(0, 2, 1).to(pos.dtype)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        dtype = self.patch_embedding.weight.dtype
        patches = self.patch_embedding(pixel_values.to(dtype))
        batch, _, height, width = patches.shape
        patches = patches.flatten(2).transpose(1, 2)
        cls = self.class_embedding.expand(batch, 1, -1).to(dtype)
        positions = torch.cat([self.position_embedding[:, :1, :], self._patch_positions(height, width)], dim=1)
        return torch.cat([cls, patches], dim=1) + positions.to(dtype)


class InternAttention(nn.Module):
    """Bidirectional multi-head attention with a fused ``qkv`` projection, through torch SDPA."""

    def __init__(self, config: VisionConfig):
        super().__init__()
        self.embed_dim = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = self.embed_dim // self.num_heads
        self.qkv = nn.Linear(self.embed_dim, 3 * self.embed_dim, bias=config.qkv_bias)
        self.attention_dropout = config.attention_dropout
        self.qk_normalization = config.qk_normalization
        if self.qk_normalization:
            # Normalised over all heads together (embed_dim), not per head.
            self.q_norm = InternRMSNorm(self.embed_dim, eps=config.layer_norm_eps)
            self.k_norm = InternRMSNorm(self.embed_dim, eps=config.layer_norm_eps)
        self.proj = nn.Linear(self.embed_dim, self.embed_dim)
        self.proj_drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, dim = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        if self.qk_normalization:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = (t.reshape(batch, seq, self.num_heads, self.head_dim).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attention_dropout if self.training else 0.0)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(batch, seq, dim)))


class InternMLP(nn.Module):
    def __init__(self, config: VisionConfig):
        super().__init__()
        self.act = ACT2FN[config.hidden_act]
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class InternVisionEncoderLayer(nn.Module):
    """Pre-norm block with layer scale: ``x + ls * f(norm(x))`` for attention, then the MLP."""

    def __init__(self, config: VisionConfig, drop_path_rate: float = 0.0):
        super().__init__()
        dim = config.hidden_size
        self.attn = InternAttention(config)
        self.mlp = InternMLP(config)
        self.norm1 = make_norm(config, dim)
        self.norm2 = make_norm(config, dim)
        self.ls1 = nn.Parameter(torch.full((dim,), float(config.initializer_factor)))
        self.ls2 = nn.Parameter(torch.full((dim,), float(config.initializer_factor)))
        self.drop_path_rate = drop_path_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + drop_path(self.attn(self.norm1(x).to(x.dtype)) * self.ls1, self.drop_path_rate, self.training)
        return x + drop_path(self.mlp(self.norm2(x).to(x.dtype)) * self.ls2, self.drop_path_rate, self.training)


class InternVisionEncoder(nn.Module):
    def __init__(self, config: VisionConfig):
        super().__init__()
        rates = torch.linspace(0, config.drop_path_rate, config.num_hidden_layers, device='cpu').tolist()
        self.layers = nn.ModuleList(InternVisionEncoderLayer(config, rate) for rate in rates)
        self.gradient_checkpointing = False

    def forward(self, hidden_states: torch.Tensor, output_hidden_states: bool = False):
        states = [hidden_states] if output_hidden_states else None
        for layer in self.layers:
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                hidden_states = checkpoint(layer, hidden_states, use_reentrant=False)
            else:
                hidden_states = layer(hidden_states)
            if states is not None:
                states.append(hidden_states)
        return hidden_states, (tuple(states) if states is not None else None)


class InternVisionModel(nn.Module):
    """InternViT. ``forward`` returns ``last_hidden_state`` (class token first) and optionally all states."""

    main_input_name = 'pixel_values'

    def __init__(self, config: VisionConfig):
        super().__init__()
        self.config = config
        self.embeddings = InternVisionEmbeddings(config)
        self.encoder = InternVisionEncoder(config)

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: Optional[dict] = None) -> None:
        self.encoder.gradient_checkpointing = True

    def gradient_checkpointing_disable(self) -> None:
        self.encoder.gradient_checkpointing = False

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings

    def forward(self, pixel_values: torch.Tensor, output_hidden_states: bool = False,
                return_dict: bool = True) -> BaseModelOutputWithPooling:
        if pixel_values.ndim != 4:
            raise ValueError(f'pixel_values must be [num_tiles, 3, H, W], got shape {tuple(pixel_values.shape)}')
        last, states = self.encoder(self.embeddings(pixel_values), output_hidden_states)
        return BaseModelOutputWithPooling(last_hidden_state=last, pooler_output=last[:, 0, :], hidden_states=states)
