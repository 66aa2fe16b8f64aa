"""A conversation record -> InternVL2 training tokens, labelled where the answers are.

The pieces come from the chat template (:meth:`ChatTemplate.pieces`), so the first turn's prompt
tokens are exactly those of :func:`build_chat_prompt` at inference. Prompt and answer are
tokenized apart: the prompt gets no labels, the answer and its separator are learned.

Truncation never cuts the image block: whole later turns are dropped first, then the first answer
is shortened; a record whose first prompt alone exceeds ``max_length`` cannot be used.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List

from .conversation import ChatTemplate, with_images

IGNORE_INDEX = -100
UNLIMITED_LENGTH = 1 << 62  # max_length for counting: nothing is ever truncated


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


def encode_conversation(record: dict, tokenizer, template: ChatTemplate, system_message: str, num_tiles: int,
                        num_image_token: int, max_length: int) -> EncodedSample:
    """Tokens and labels of ``record`` whose image (if any) has ``num_tiles`` tiles."""
    num_tiles = num_tiles if record.get('image') else 0
    turns = with_images(conversation_turns(record), [num_tiles] if num_tiles else [], num_image_token)
    input_ids: List[int] = []
    labels: List[int] = []
    truncated = False
    for turn, (prompt, answer) in enumerate(template.pieces(turns, system_message)):
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
        input_ids += prompt_ids + answer_ids[:room]
        labels += [IGNORE_INDEX] * len(prompt_ids) + answer_ids[:room]
        if truncated:
            break
    return EncodedSample(input_ids, labels, num_tiles, truncated)
