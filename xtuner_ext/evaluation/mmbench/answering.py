"""The model side of an MMBench run: one image and one question in, the greedy answer out.

Tiling and generation follow the official InternVL MMBench evaluation run with ``--dynamic``:
dynamic tiles, ``min_num=1``, ``max_num=6``, the checkpoint's ``use_thumbnail``, one beam,
``max_new_tokens=100``, ``min_new_tokens=1``, no sampling. The prompt is the processor's (the
template, system message and ``<image>\\n`` rule ``chat()`` uses).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import torch
from PIL import Image

from ...models.internvl2 import InternVL2Processor, InternVLChatModel
from .prompts import build_question
from .tsv import MMBenchRow

OFFICIAL_GENERATION = dict(num_beams=1, max_new_tokens=100, min_new_tokens=1, do_sample=False)
OFFICIAL_TILING = dict(dynamic_image_size=True, min_dynamic_patch=1, max_dynamic_patch=6)


def evaluation_processor(tokenizer, config, system_message: Optional[str] = None, dynamic: bool = True,
                         max_num: int = 6) -> InternVL2Processor:
    tiling = dict(OFFICIAL_TILING, dynamic_image_size=dynamic, max_dynamic_patch=max_num)
    return InternVL2Processor(tokenizer, config, system_message=system_message, **tiling)


class InternVL2Answerer:
    """Answers with a native InternVL2 model (a folder, or the LoRA model of a training config)."""

    def __init__(self, model: InternVLChatModel, processor: InternVL2Processor, name: str,
                 generation_config: Optional[dict] = None):
        self.model = model.eval()
        self.processor = processor
        self.name = name
        self.generation_config = dict(generation_config or OFFICIAL_GENERATION)
        self.model.img_context_token_id = processor.img_context_token_id

    @classmethod
    def from_folder(cls, path: Union[str, Path], device: str = 'cpu', torch_dtype: Optional[str] = None,
                    dynamic: bool = True, max_num: int = 6, max_new_tokens: int = 100) -> 'InternVL2Answerer':
        """An official-layout InternVL2 folder, base or converted from a fine-tune."""
        model = InternVLChatModel.from_pretrained(path, torch_dtype=torch_dtype, device=device)
        base = InternVL2Processor.from_pretrained(path)
        processor = evaluation_processor(base.tokenizer, base.config, dynamic=dynamic, max_num=max_num)
        generation = dict(OFFICIAL_GENERATION, max_new_tokens=max_new_tokens)
        return cls(model, processor, str(Path(path).resolve()), generation)

    @classmethod
    def from_config(cls, config: Union[str, Path], checkpoint: Union[str, Path], dynamic: bool = True,
                    max_num: int = 6, max_new_tokens: int = 100) -> 'InternVL2Answerer':
        """A training config's ``InternVL2QLoRA`` with its trained ``iter_N.pth`` loaded strictly;
        the prompt keeps the config's system message."""
        from mmengine.config import Config
        from mmengine.registry import MODELS

        from ...registration import register_all

        register_all()  # the config's type='InternVL2QLoRA' is a registry name
        qlora = MODELS.build(Config.fromfile(str(config)).model)
        qlora.load_trainable_state(str(checkpoint))
        processor = evaluation_processor(qlora.tokenizer, qlora.model.config, qlora.processor.system_message,
                                         dynamic, max_num)
        return cls(qlora.model, processor, f'{Path(config).resolve()} + {Path(checkpoint).resolve()}',
                   dict(OFFICIAL_GENERATION, max_new_tokens=max_new_tokens))

    def settings(self) -> dict:
        """What decides the answers: a resumed run must have the same."""
        return {'model': self.name, 'tiling': repr(self.processor.tiling), 'system_message':
                self.processor.system_message, 'generation': self.generation_config}

    def question(self, row: MMBenchRow, language: str) -> str:
        return build_question(row, language)

    def prompt(self, question: str, num_tiles: int) -> str:
        return self.processor.prompt(question, None, [num_tiles])

    @torch.no_grad()
    def answer(self, image: Image.Image, question: str) -> str:
        pixel_values = self.processor.pixel_values(image)
        pixel_values = pixel_values.to(self.model.vision_model.embeddings.patch_embedding.weight.dtype)
        query = self.prompt(question, len(pixel_values))
        return self.model.generate_text(self.processor.tokenizer, [query], pixel_values, self.generation_config)[0]
