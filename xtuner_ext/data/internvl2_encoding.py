"""A conversation record -> InternVL2 training tokens, with the prompt ``chat()`` would send.

Each turn is rendered with InternVL2's own chat template (not XTuner's InternLM2 template): the
prompt part (system, ``<|im_start|>user\\n``, the question with its image tokens,
``<|im_end|><|im_start|>assistant\\n``) gets no labels; the answer and its ``<|im_end|>`` are
learned. Prompt and answer are tokenized as separate pieces, so the first turn's prompt tokens are
exactly those of :func:`build_chat_prompt` at inference.

Truncation never cuts the image block: whole later turns are dropped first, then the first answer
is shortened; a record whose first prompt alone exceeds ``max_length`` cannot be used.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from xtuner_ext.models.internvl2.conversation import (ChatTemplate, expand_image_placeholders, get_template,
                                                      with_image_placeholder)

IGNORE_INDEX = -100


class SampleTooLongError(ValueError):
    """The first turn's prompt (with its image tokens) does not fit in ``max_length``."""


@dataclass(frozen=True)
class EncodedSample:
    input_ids: List[int]
    labels: List[int]
    num_tiles: int
    truncated: bool


def conversation_turns(record: dict) -> List[tuple]:
    """(question, answer) pairs of a canonical record (human/gpt alternating, checked upstream)."""
    turns = record['conversations']
    return [(turns[i]['value'], turns[i + 1]['value']) for i in range(0, len(turns) - 1, 2)]


def _pieces(turns, template: ChatTemplate, system_message: Optional[str], num_tiles: int,
            num_image_token: int, has_image: bool):
    """Alternating (prompt, answer) texts; the system header belongs to the first prompt."""
    system = template.system_message if system_message is None else system_message
    header = template.system_template.format(system_message=system) + template.sep
    pieces = []
    for i, (question, answer) in enumerate(turns):
        if i == 0:
            question = with_image_placeholder(question, has_image, None)
            question = expand_image_placeholders(question, [num_tiles] if has_image else [], num_image_token)
        prompt = (header if i == 0 else '') + template.roles[0] + question + template.sep + template.roles[1]
        pieces.append((prompt, answer + template.sep))
    return pieces


def encode_conversation(record: dict, tokenizer, num_tiles: int, num_image_token: int, max_length: int,
                        template: str = 'internlm2-chat', system_message: Optional[str] = None) -> EncodedSample:
    has_image = bool(record.get('image'))
    num_tiles = num_tiles if has_image else 0
    pieces = _pieces(conversation_turns(record), get_template(template), system_message, num_tiles,
                     num_image_token, has_image)
    input_ids: List[int] = []
    labels: List[int] = []
    truncated = False
    for turn, (prompt, answer) in enumerate(pieces):
        prompt_ids = tokenizer(prompt, add_special_tokens=turn == 0)['input_ids']
        answer_ids = tokenizer(answer, add_special_tokens=False)['input_ids']
        room = max_length - len(input_ids) - len(prompt_ids)
        if room <= 0 or (turn > 0 and room < len(answer_ids)):
            if turn == 0:
                raise SampleTooLongError(
                    f'the first prompt alone is {len(prompt_ids)} tokens ({num_tiles} image tiles x '
                    f'{num_image_token}) but max_length is {max_length}: raise max_length or lower '
                    'max_dynamic_patch')
            truncated = True
            break
        truncated = room < len(answer_ids)
        answer_ids = answer_ids[:room]
        input_ids += prompt_ids + answer_ids
        labels += [IGNORE_INDEX] * len(prompt_ids) + answer_ids
        if truncated:
            break
    return EncodedSample(input_ids, labels, num_tiles, truncated)
