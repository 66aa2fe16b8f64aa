"""Frozen-ViT feature cache: each distinct image runs the ViT once per training run.

Why: a frozen, deterministic ViT gives the same features for the same pixels every time, and the
tutorial trains 6 epochs over the same 2000 memes, so epochs 2-6 would recompute identical
features (the ViT is about a fifth of a CLoT-like step's FLOPs). Images are keyed by a digest of
their pixel values, computed by the dataset in its workers (:func:`pixel_digest`): a changed image is
a miss, never a stale hit. Features stay on the model's device up to ``max_gib``; past that, new
images run the ViT every time (said once in the log). What is cached is the projector's input, so
the trainable projector still sees every step.
"""
from __future__ import annotations

import hashlib
import logging
from typing import Callable, Dict, List, Sequence

import torch
from mmengine.logging import print_log
from torch import nn


def pixel_digest(pixel_values: torch.Tensor) -> str:
    """A content key of one image's tiles: shape, dtype and bytes (SHA-1, ~1.6 GB/s on one core)."""
    array = pixel_values.detach().contiguous().cpu().numpy()
    digest = hashlib.sha1(f'{tuple(array.shape)}:{array.dtype}:'.encode(), usedforsecurity=False)
    digest.update(memoryview(array).cast('B'))
    return digest.hexdigest()


def stochastic_parts(module: nn.Module) -> List[str]:
    """Sub-modules whose training-mode output is random (dropout, drop path, attention dropout)."""
    found = []
    for name, sub in module.named_modules():
        rates = [getattr(sub, attr, 0.0) for attr in ('drop_path_rate', 'attention_dropout')]
        if isinstance(sub, nn.modules.dropout._DropoutNd):
            rates.append(sub.p)
        if any(isinstance(rate, (int, float)) and rate > 0 for rate in rates):
            found.append(name or type(module).__name__)
    return found


class VisionFeatureCache:
    """Features per image digest, on the device they were computed on, up to ``max_gib``."""

    def __init__(self, max_gib: float):
        if not max_gib or max_gib <= 0:
            raise ValueError(f'vision_feature_cache_gib must be a positive number of GiB, got {max_gib!r}')
        self.max_bytes = int(max_gib * 2**30)
        self.entries: Dict[str, torch.Tensor] = {}
        self.bytes = 0
        self.hits = self.misses = 0
        self.full = False

    def features(self, pixel_values: torch.Tensor, keys: Sequence[str], tiles: Sequence[int],
                 compute: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Per-tile features of the images in ``pixel_values`` (``tiles[i]`` tiles for ``keys[i]``,
        in order); only images not cached yet go through ``compute``, in one call."""
        if len(keys) != len(tiles) or sum(tiles) != len(pixel_values):
            raise ValueError(f'image_keys ({len(keys)}) and image_tiles (sum {sum(tiles)}) do not describe the '
                             f'{len(pixel_values)} tiles of pixel_values; build batches with the project\'s collate functions')
        chunks = dict(zip(keys, pixel_values.split(list(tiles))))
        missing = [key for key in chunks if key not in self.entries]  # unique, in batch order
        fresh = {}
        if missing:
            computed = compute(torch.cat([chunks[key] for key in missing]))
            fresh = dict(zip(missing, computed.split([len(chunks[key]) for key in missing])))
            for key in missing:
                self._store(key, fresh[key])
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        return torch.cat([self.entries.get(key, fresh.get(key)) for key in keys])

    def _store(self, key: str, features: torch.Tensor) -> None:
        size = features.numel() * features.element_size()
        if self.bytes + size > self.max_bytes:
            if not self.full:  # said once
                print_log(f'vision feature cache full at {len(self.entries)} images ({self.bytes / 2**30:.1f} GiB, '
                          f'vision_feature_cache_gib={self.max_bytes / 2**30:g}): other images run the ViT every '
                          'time', 'current', logging.WARNING)
                self.full = True
            return
        self.entries[key] = features.detach().clone()  # not a view that would keep the whole batch alive
        self.bytes += size

    def summary(self) -> str:
        total = max(self.hits + self.misses, 1)
        return (f'vision feature cache: {len(self.entries)} images, {self.bytes / 2**30:.2f} GiB, '
                f'{self.hits} hits / {self.misses} misses ({self.hits / total:.0%} hit rate)')
