"""The model side of an MMBench run for XTuner's LLaVA models (InternLM2 + CLIP), as ``xtuner mmbench`` asks.

XTuner's ``xtuner/tools/mmbench.py`` builds, per row: the hint and a newline when there is a hint,
the question and a newline, ``{letter}. {text}\\n`` per non-empty option, then the instruction;
``<image>\\n`` goes first and the ``--prompt-template`` (``internlm2_chat`` for these models)
wraps it; the ids start with ``<s>`` and the image features stand where ``<image>`` was. The
picture is padded to a square of the image processor's mean colour, then preprocessed. Answers are
greedy with ``max_new_tokens=100``, stopping at ``<|im_end|>`` or ``</s>``.

One difference: XTuner picks the Chinese instruction per row when its text has a CJK character;
here the run's language applies (the file's, or ``--language``), the same on the official files.

Two ways to hold the model: a ``llava-hf`` folder (``xtuner-ext llava export``), run by
transformers' own ``LlavaForConditionalGeneration``; or a LLaVA training config with its
``iter_N.pth``, run as XTuner's ``LLaVAModel`` with the LLM unquantized (as the export merges it).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Union

import torch
from PIL import Image

from ...models.internlm2.chat import build_prompt, stop_token_ids
from ...models.llava.chat import IMAGE_TOKEN, llava_chat
from .prompts import INSTRUCTIONS
from .tsv import MMBenchRow

XTUNER_GENERATION = dict(num_beams=1, max_new_tokens=100, do_sample=False)
PROMPT_RULE = 'xtuner mmbench: <image> first, internlm2_chat template, image padded to square'


def build_llava_question(row: MMBenchRow, language: str) -> str:
    """The text ``xtuner mmbench`` puts after ``<image>\\n`` for one row."""
    if language not in INSTRUCTIONS:
        raise ValueError(f'language {language!r} is not one of {sorted(INSTRUCTIONS)}')
    text = row.question + '\n' if row.hint is None else row.hint + '\n' + row.question + '\n'
    text += ''.join(f'{letter}. {option}\n' for letter, option in row.options.items())
    return text + INSTRUCTIONS[language]


def is_llava_folder(path: Union[str, Path]) -> bool:
    """A transformers ``llava-hf`` folder (``model_type`` ``llava`` in its ``config.json``)."""
    config = Path(path) / 'config.json'
    return config.is_file() and json.loads(config.read_text(encoding='utf-8')).get('model_type') == 'llava'


def is_llava_config(config) -> bool:
    """A training config whose model is XTuner's ``LLaVAModel`` (the class, its dotted path as mmengine
    stores an imported class, or its registry name)."""
    kind = config.model.get('type')
    return str(getattr(kind, '__name__', kind)).rpartition('.')[2] == 'LLaVAModel'


def pad_to_square(image: Image.Image, image_processor) -> Image.Image:
    from xtuner.dataset.utils import expand2square

    return expand2square(image.convert('RGB'), tuple(int(x * 255) for x in image_processor.image_mean))


class _LLaVAAnswerer:
    """What both LLaVA holders share: the question text and the settings a resumed run must keep."""

    name: str
    generation_config: dict

    def settings(self) -> dict:
        return {'model': self.name, 'prompt': PROMPT_RULE, 'generation': self.generation_config}

    def question(self, row: MMBenchRow, language: str) -> str:
        return build_llava_question(row, language)


class LLaVAHFAnswerer(_LLaVAAnswerer):
    """A ``llava-hf`` folder through ``LlavaForConditionalGeneration`` and its ``LlavaProcessor``."""

    def __init__(self, path: Union[str, Path], device: str = 'cpu', torch_dtype: Optional[str] = None,
                 max_new_tokens: int = 100):
        from transformers import AutoProcessor, LlavaForConditionalGeneration

        dtype = getattr(torch, torch_dtype) if torch_dtype else 'auto'
        self.model = LlavaForConditionalGeneration.from_pretrained(str(path), torch_dtype=dtype).to(device).eval()
        self.processor = AutoProcessor.from_pretrained(str(path), use_fast=False)  # InternLM2's exact tokenizer
        self.name = str(Path(path).resolve())
        self.generation_config = dict(XTUNER_GENERATION, max_new_tokens=max_new_tokens)

    def inputs(self, image: Image.Image, question: str) -> dict:
        """Ids and pixels: ``<s>`` + the chat prompt, ``<image>`` expanded to the vision tokens."""
        prompt = build_prompt(f'{IMAGE_TOKEN}\n{question}')
        inputs = self.processor(images=pad_to_square(image, self.processor.image_processor), text=prompt,
                                return_tensors='pt')
        inputs.pop('token_type_ids', None)  # fast tokenizers return it; Llava does not take it
        inputs['pixel_values'] = inputs['pixel_values'].to(self.model.dtype)
        return inputs.to(self.model.device)

    @torch.no_grad()
    def answer(self, image: Image.Image, question: str) -> str:
        inputs = self.inputs(image, question)
        tokenizer = self.processor.tokenizer
        output = self.model.generate(**inputs, **self.generation_config, eos_token_id=stop_token_ids(tokenizer),
                                     pad_token_id=tokenizer.pad_token_id)
        return tokenizer.decode(output[0, inputs['input_ids'].shape[1]:], skip_special_tokens=True).strip()


class LLaVAConfigAnswerer(_LLaVAAnswerer):
    """A LLaVA training config's ``LLaVAModel`` with its trained ``iter_N.pth`` (checked strictly)."""

    def __init__(self, config: Union[str, Path], checkpoint: Union[str, Path], device: str = 'cpu',
                 max_new_tokens: int = 100):
        from mmengine.config import Config
        from xtuner.registry import BUILDER

        from ...models.llava.export import llava_from_checkpoint

        cfg = Config.fromfile(str(config))
        self.model = llava_from_checkpoint(str(config), str(checkpoint)).to(device)
        self.tokenizer, self.image_processor = BUILDER.build(cfg.tokenizer), BUILDER.build(cfg.image_processor)
        self.name = f'{Path(config).resolve()} + {Path(checkpoint).resolve()}'
        self.generation_config = dict(XTUNER_GENERATION, max_new_tokens=max_new_tokens)

    def answer(self, image: Image.Image, question: str) -> str:
        return llava_chat(self.model, self.tokenizer, self.image_processor, image, question,
                          self.generation_config['max_new_tokens'], pad_to_square=True)
