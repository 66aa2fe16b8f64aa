"""CLIP vision tower and image processor for LLaVA configs, from transformers, plus a tiny one for tests.

Registered-name-free builders (configs name them by dotted path) so a config keeps ``{{$VAR}}``
path substitution; both read a local folder only.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import torch
from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

# Tiny CLIP-ViT: 28 px, patch 14 -> 4 patch tokens (+ CLS), like ViT-L/14-336's 576 at toy size.
TINY_CLIP = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
                 image_size=28, patch_size=14, projection_dim=32)
OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def build_clip_vision(pretrained_model_name_or_path: str, torch_dtype='auto') -> CLIPVisionModel:
    """``CLIPVisionModel`` from a local folder; ``'auto'``: bf16 on a GPU, fp32 on the CPU."""
    if torch_dtype == 'auto':
        torch_dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    elif isinstance(torch_dtype, str):
        torch_dtype = getattr(torch, torch_dtype)
    return CLIPVisionModel.from_pretrained(pretrained_model_name_or_path, torch_dtype=torch_dtype)


def clip_image_processor(pretrained_model_name_or_path: str, **unused) -> CLIPImageProcessor:
    """The folder's ``preprocessor_config.json`` (stock configs pass ``trust_remote_code``: ignored)."""
    return CLIPImageProcessor.from_pretrained(pretrained_model_name_or_path)


def make_tiny_clip(out_dir: Union[str, Path], seed: int = 0) -> Path:
    """A seeded random CLIP vision tower + image processor folder (transformers layout)."""
    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    model = CLIPVisionModel(CLIPVisionConfig(**TINY_CLIP))
    tmp = out_dir.with_name(f'.{out_dir.name}.tmp')
    model.save_pretrained(str(tmp))
    size = TINY_CLIP['image_size']
    CLIPImageProcessor(size={'shortest_edge': size}, crop_size={'height': size, 'width': size},
                       image_mean=OPENAI_CLIP_MEAN, image_std=OPENAI_CLIP_STD).save_pretrained(str(tmp))
    os.replace(tmp, out_dir)
    return out_dir
