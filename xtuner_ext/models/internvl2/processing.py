"""InternVL2Processor: the one object that turns "image + question" or a training record into
model inputs.

Built once from a model folder plus overrides, it owns the tokenizer, the chat template and
system message, and one frozen :class:`TilingSpec`. The training dataset, ``chat()``, the
preflight check and every later tool ask it, so tiles, prompts and token counts cannot drift
apart (in the spirit of transformers' processors and torchtune's model transforms).
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Optional, Sequence, Tuple, Union

import torch
from PIL import Image

from .configuration import InternVLChatConfig
from .conversation import IMG_CONTEXT_TOKEN, Turn, build_chat_prompt, get_template
from .encoding import UNLIMITED_LENGTH, EncodedSample, encode_conversation
from .image_processing import TilingSpec
from .tokenizer import load_tokenizer, require_image_tokens

ImageLike = Union[str, Path, Image.Image]


class TokenCount(NamedTuple):
    tiles: int
    image_tokens: int
    text_tokens: int

    @property
    def total(self) -> int:
        return self.image_tokens + self.text_tokens


class InternVL2Processor:
    """Args:
        tokenizer: the model folder's tokenizer (:func:`load_tokenizer`).
        config: the folder's :class:`InternVLChatConfig`.
        system_message: replaces the config's (else the template's) system message.
        **tiling: overrides of ``dynamic_image_size``, ``min_dynamic_patch``, ``max_dynamic_patch``,
            ``use_thumbnail`` (None keeps the config's value); e.g. the tutorial's ``max_dynamic_patch=6``.
    """

    def __init__(self, tokenizer, config: InternVLChatConfig, system_message: Optional[str] = None, **tiling):
        self.tokenizer = tokenizer
        self.config = config
        self.tiling = TilingSpec.from_config(config, **tiling)
        self.template = get_template(config.template)
        self.system_message = system_message or config.system_message or self.template.system_message
        self.num_image_token = config.num_image_token
        self.img_context_token_id = require_image_tokens(tokenizer)[IMG_CONTEXT_TOKEN]

    @classmethod
    def from_pretrained(cls, path: Union[str, Path], **overrides) -> 'InternVL2Processor':
        config = InternVLChatConfig.from_pretrained(path)  # first: a missing config.json is the clearer error
        return cls(load_tokenizer(path), config, **overrides)

    @property
    def stop_token(self) -> str:
        """The template's separator: generation ends there."""
        return self.template.sep

    # ---- images ----
    def num_tiles(self, image_size: Tuple[int, int]) -> int:
        """Tiles for an image of ``(width, height)``, thumbnail included."""
        return self.tiling.num_tiles(*image_size)

    def pixel_values(self, image: ImageLike) -> torch.Tensor:
        return self.tiling.pixel_values(image)

    # ---- text ----
    def prompt(self, question: str, history: Optional[Sequence[Turn]] = None,
               num_patches_list: Sequence[int] = ()) -> str:
        """The prompt ``chat()`` sends: one tile count per image in ``num_patches_list``."""
        return build_chat_prompt(question, history, num_patches_list, self.num_image_token, self.config.template,
                                 self.system_message)

    def encode(self, record: dict, num_tiles: int, max_length: int) -> EncodedSample:
        """Training tokens and labels of a canonical record whose image has ``num_tiles`` tiles."""
        return encode_conversation(record, self.tokenizer, self.template, self.system_message, num_tiles,
                                   self.num_image_token, max_length)

    def count_tokens(self, record: dict, image_size: Optional[Tuple[int, int]]) -> TokenCount:
        """What :meth:`encode` would produce, untruncated: for the preflight check."""
        if record.get('image') and image_size is None:
            raise ValueError('the token count of an image record needs its image size')
        tiles = self.num_tiles(image_size) if record.get('image') else 0
        encoded = self.encode(record, tiles, UNLIMITED_LENGTH)
        image_tokens = tiles * self.num_image_token
        return TokenCount(tiles, image_tokens, len(encoded.input_ids) - image_tokens)

    def __repr__(self) -> str:
        return (f'InternVL2Processor(template={self.config.template!r}, num_image_token={self.num_image_token}, '
                f'tiling={self.tiling})')
