"""What a user sends from the page, checked before any model runs.

Each problem is an :class:`InputError` whose message is shown in the page as is, so it says what
is wrong and what to do.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from PIL import Image, UnidentifiedImageError

# 40 megapixels: larger than any phone photo, far below Pillow's decompression-bomb limit (89 MP).
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000


class InputError(ValueError):
    """A question or picture the page cannot answer; the message is meant for the page."""


@dataclass(frozen=True)
class GenerationSettings:
    """The page's generation controls. Greedy decoding is the default: then the page's answers
    are exactly ``chat()``'s, and differences between the two models come from training."""

    max_new_tokens: int = 128
    do_sample: bool = False
    temperature: float = 0.7
    top_p: float = 0.9

    def generation_config(self) -> dict:
        if not 1 <= self.max_new_tokens:
            raise InputError(f'max new tokens must be at least 1, got {self.max_new_tokens}')
        config = dict(max_new_tokens=int(self.max_new_tokens), do_sample=self.do_sample)
        if self.do_sample:
            if not (self.temperature > 0 and 0 < self.top_p <= 1):
                raise InputError(f'sampling needs temperature > 0 and 0 < top-p <= 1, got temperature '
                                 f'{self.temperature} and top-p {self.top_p}')
            config.update(temperature=float(self.temperature), top_p=float(self.top_p))
        return config


def check_question(question: Optional[str]) -> str:
    text = (question or '').strip()
    if not text:
        raise InputError('The question is empty: type a question about the picture, then press Ask.')
    return text


def check_image(image_path: Optional[str], needs_image: bool, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> None:
    """A picture is required when a model needs one, and must open and fit in ``max_pixels``."""
    if not image_path:
        if needs_image:
            raise InputError('No picture: upload one (or click a sample below) before asking; InternVL2 '
                             'answers questions about a picture.')
        return
    try:
        with Image.open(image_path) as image:
            width, height = image.size
    except Image.DecompressionBombError as exc:
        raise InputError(f'The picture {Path(image_path).name} is too large to open safely ({exc}); '
                         'downscale it and upload it again.') from exc
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f'{Path(image_path).name} is not a picture this page can read ({exc}); upload a JPEG, '
                         'PNG or WebP file.') from exc
    if width * height > max_pixels:
        raise InputError(f'The picture is {width}x{height} = {width * height / 1e6:.1f} megapixels; this page accepts '
                         f'up to {max_pixels / 1e6:.1f} (--max-image-pixels). Downscale it and upload it again.')


__all__ = ['InputError', 'GenerationSettings', 'check_question', 'check_image', 'DEFAULT_MAX_IMAGE_PIXELS']
