"""Token budget of a training sample: tiles x image tokens + text tokens, to compare with max_length.

The tiling rule and the tokenizer come from the InternVL2 model package
(``xtuner_ext.models.internvl2``); this module only adds them up.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from .records import IMAGE_TOKEN, normalize_image_field


@dataclass(frozen=True)
class ImageSettings:
    """The model-config values that decide how many image tokens a picture costs."""

    min_dynamic_patch: int = 1
    max_dynamic_patch: int = 12
    use_thumbnail: bool = True
    dynamic_image_size: bool = True
    image_size: int = 448
    patch_size: int = 14
    downsample_ratio: float = 0.5

    @classmethod
    def from_config(cls, config) -> ImageSettings:
        """From an InternVL ``config.json`` dict (or a config object with the same attributes)."""
        get = config.get if isinstance(config, dict) else lambda k, d=None: getattr(config, k, d)
        vision = get("vision_config") or {}
        vget = vision.get if isinstance(vision, dict) else lambda k, d=None: getattr(vision, k, d)
        defaults = cls()
        return cls(
            min_dynamic_patch=int(get("min_dynamic_patch", defaults.min_dynamic_patch)),
            max_dynamic_patch=int(get("max_dynamic_patch", defaults.max_dynamic_patch)),
            use_thumbnail=bool(get("use_thumbnail", defaults.use_thumbnail)),
            dynamic_image_size=bool(get("dynamic_image_size", defaults.dynamic_image_size)),
            image_size=int(get("force_image_size", None) or vget("image_size", defaults.image_size)),
            patch_size=int(vget("patch_size", defaults.patch_size)),
            downsample_ratio=float(get("downsample_ratio", defaults.downsample_ratio)),
        )

    @property
    def num_image_token(self) -> int:
        return int((self.image_size // self.patch_size) ** 2 * self.downsample_ratio**2)

    def tiles(self, width: int, height: int) -> int:
        if not self.dynamic_image_size:
            return 1
        from xtuner_ext.models.internvl2.image_processing import num_tiles_for_size

        return num_tiles_for_size(width, height, self.min_dynamic_patch, self.max_dynamic_patch,
                                  image_size=self.image_size, use_thumbnail=self.use_thumbnail)


def load_model_config(model_dir: str | os.PathLike) -> dict:
    path = os.path.join(model_dir, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found; --model must be an InternVL2 model folder with config.json and a tokenizer")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load_tokenizer(model_dir: str | os.PathLike):
    """The model folder's tokenizer (InternVL2 package loader: no remote code, image tokens checked)."""
    from xtuner_ext.models.internvl2.tokenizer import load_tokenizer as load

    return load(model_dir)


UNLIMITED_LENGTH = 1 << 62  # max_length for counting: encode_conversation never truncates


class TokenBudget:
    """Counts ``(tiles, image_tokens, text_tokens)`` for a canonical record."""

    def __init__(self, tokenizer, model_config):
        self.tokenizer = tokenizer
        self.settings = ImageSettings.from_config(model_config)
        self.num_image_token = self.settings.num_image_token
        get = model_config.get if isinstance(model_config, dict) else lambda k, d=None: getattr(model_config, k, d)
        self.template = get("template", None) or "internlm2-chat"
        self.system_message = get("system_message", None)  # None: the template's (as in training)

    @classmethod
    def from_model_dir(cls, model_dir: str | os.PathLike, max_dynamic_patch: int | None = None) -> TokenBudget:
        """``max_dynamic_patch`` overrides the model config's, as the training dataset's does."""
        config = load_model_config(model_dir)  # first: a missing config.json is the clearer message
        if max_dynamic_patch is not None:
            config = dict(config, max_dynamic_patch=max_dynamic_patch)
        return cls(load_tokenizer(model_dir), config)

    def count(self, record: dict, image_size: tuple[int, int] | None) -> tuple[int, int, int]:
        image = normalize_image_field(record.get("image"))
        tiles = 0
        if image is not None:
            if image_size is None:
                raise ValueError("the token budget of an image record needs its image size")
            tiles = self.settings.tiles(*image_size)
        # Encoded exactly as training encodes it (prompt and answer pieces tokenized apart, the
        # model's system message), never truncated, so the preflight count equals the training one.
        from .internvl2_encoding import encode_conversation

        encoded = encode_conversation(record, self.tokenizer, tiles, self.num_image_token, UNLIMITED_LENGTH,
                                      self.template, self.system_message)
        image_tokens = tiles * self.num_image_token
        return tiles, image_tokens, len(encoded.input_ids) - image_tokens


def training_text(record: dict, template: str = "internlm2-chat") -> str:
    """The whole conversation as training sees it, in the model's chat template (InternVL2's
    ``build_chat_prompt`` templates), with each ``<image>`` as an empty ``<img></img>``: the image's
    ``<IMG_CONTEXT>`` tokens are counted apart, as tiles x num_image_token."""
    from xtuner_ext.models.internvl2.conversation import expand_image_placeholders, get_template

    turns = record["conversations"]
    pairs = [(turns[i]["value"], turns[i + 1]["value"]) for i in range(0, len(turns) - 1, 2)]
    text = get_template(template).render(pairs)
    return expand_image_placeholders(text, [0] * text.count(IMAGE_TOKEN), 0)
