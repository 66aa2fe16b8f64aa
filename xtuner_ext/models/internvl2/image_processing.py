"""InternVL2 image preprocessing: dynamic tiling, thumbnail and ImageNet normalisation.

Numerically the same as the official model card's ``load_image``: pick the tile grid whose aspect
ratio is closest to the image's, bicubic-resize to that grid, crop square tiles, append a
thumbnail when there is more than one tile, then ``Resize -> ToTensor -> Normalize`` per tile.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import List, Optional, Tuple, Union

import torch
import torchvision.transforms as T
from PIL import Image
from torchvision.transforms.functional import InterpolationMode

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def candidate_grids(min_num: int, max_num: int) -> List[Tuple[int, int]]:
    """All (cols, rows) with ``min_num <= cols * rows <= max_num``, fewest tiles first."""
    if not 1 <= min_num <= max_num:
        raise ValueError(f'need 1 <= min_num <= max_num, got min_num={min_num}, max_num={max_num}')
    grids = {(i, j) for n in range(min_num, max_num + 1) for i in range(1, n + 1) for j in range(1, n + 1)
             if min_num <= i * j <= max_num}
    # Sorting a set keeps the official tie order between grids with the same tile count.
    return sorted(grids, key=lambda g: g[0] * g[1])


def choose_grid(width: int, height: int, min_num: int, max_num: int, image_size: int = 448) -> Tuple[int, int]:
    """The grid the official ``find_closest_aspect_ratio`` picks.

    Closest aspect ratio wins; on a tie the larger grid wins when the image has more than half
    the pixels that grid would hold.
    """
    aspect = width / height
    best, best_diff = (1, 1), float('inf')
    for cols, rows in candidate_grids(min_num, max_num):
        diff = abs(aspect - cols / rows)
        if diff < best_diff:
            best, best_diff = (cols, rows), diff
        elif diff == best_diff and width * height > 0.5 * image_size * image_size * cols * rows:
            best = (cols, rows)
    return best


def num_tiles_for_size(width: int, height: int, min_num: int, max_num: int, image_size: int = 448,
                       use_thumbnail: bool = True) -> int:
    """Number of tiles ``load_image`` yields for an image of this size, thumbnail included."""
    cols, rows = choose_grid(width, height, min_num, max_num, image_size)
    blocks = cols * rows
    return blocks + 1 if use_thumbnail and blocks != 1 else blocks


def dynamic_preprocess(image: Image.Image, min_num: int = 1, max_num: int = 12, image_size: int = 448,
                       use_thumbnail: bool = False) -> List[Image.Image]:
    """Split an image into ``image_size`` square tiles (row-major), plus an optional thumbnail."""
    cols, rows = choose_grid(image.width, image.height, min_num, max_num, image_size)
    resized = image.resize((cols * image_size, rows * image_size), Image.Resampling.BICUBIC)
    tiles = [
        resized.crop((c * image_size, r * image_size, (c + 1) * image_size, (r + 1) * image_size))
        for r in range(rows) for c in range(cols)
    ]
    if use_thumbnail and len(tiles) != 1:
        tiles.append(image.resize((image_size, image_size), Image.Resampling.BICUBIC))
    return tiles


def build_transform(input_size: int = 448) -> T.Compose:
    """Per-tile transform: RGB, bicubic resize, ToTensor, ImageNet normalisation."""
    return T.Compose([
        T.Lambda(lambda img: img if img.mode == 'RGB' else img.convert('RGB')),
        T.Resize((input_size, input_size), interpolation=InterpolationMode.BICUBIC),
        T.ToTensor(),
        T.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD),
    ])


@dataclass(frozen=True)
class TilingSpec:
    """How one image becomes tiles: the single rule training, chat and the preflight check share.

    Fields carry the official config's meaning and defaults (``InternVLChatConfig``: dynamic off,
    no thumbnail, 1..6 tiles). Without ``dynamic_image_size`` the official code feeds the whole
    image resized to one tile (``images = [image]``), whatever the tile limits say.
    """

    image_size: int = 448
    dynamic_image_size: bool = False
    min_dynamic_patch: int = 1
    max_dynamic_patch: int = 6
    use_thumbnail: bool = False

    def __post_init__(self):
        candidate_grids(self.min_dynamic_patch, self.max_dynamic_patch)  # validates the limits

    @classmethod
    def from_config(cls, config, **overrides) -> 'TilingSpec':
        """From an ``InternVLChatConfig``; ``overrides`` (e.g. ``max_dynamic_patch=6``) win, None is ignored."""
        unknown = set(overrides) - {'dynamic_image_size', 'min_dynamic_patch', 'max_dynamic_patch', 'use_thumbnail'}
        if unknown:
            raise ValueError(f'unknown tiling override(s) {sorted(unknown)}; known: dynamic_image_size, '
                             'min_dynamic_patch, max_dynamic_patch, use_thumbnail')
        spec = cls(config.image_size, config.dynamic_image_size, config.min_dynamic_patch, config.max_dynamic_patch,
                   config.use_thumbnail)
        return replace(spec, **{k: v for k, v in overrides.items() if v is not None})

    def num_tiles(self, width: int, height: int) -> int:
        if not self.dynamic_image_size:
            return 1
        return num_tiles_for_size(width, height, self.min_dynamic_patch, self.max_dynamic_patch, self.image_size,
                                  self.use_thumbnail)

    def split(self, image: Image.Image) -> List[Image.Image]:
        if not self.dynamic_image_size:
            return [image]
        return dynamic_preprocess(image, self.min_dynamic_patch, self.max_dynamic_patch, self.image_size,
                                  self.use_thumbnail)

    def pixel_values(self, image_or_path: Union[str, Path, Image.Image]) -> torch.Tensor:
        """``FloatTensor[num_tiles, 3, image_size, image_size]``, normalised as the ViT expects."""
        transform = build_transform(self.image_size)
        return torch.stack([transform(tile) for tile in self.split(open_rgb(image_or_path))])


def open_rgb(image_or_path: Union[str, Path, Image.Image]) -> Image.Image:
    if isinstance(image_or_path, Image.Image):
        return image_or_path.convert('RGB')
    with Image.open(image_or_path) as img:
        return img.convert('RGB')


def load_image(image_or_path: Union[str, Path, Image.Image], input_size: int = 448, max_num: int = 12,
               min_num: int = 1, use_thumbnail: bool = True) -> torch.Tensor:
    """The model card's ``load_image``: always dynamic tiling, as that function is."""
    return TilingSpec(input_size, True, min_num, max_num, use_thumbnail).pixel_values(image_or_path)
