"""A conversation record -> InternVL2 training tokens, labelled where the answers are.

The pieces come from the chat template (:meth:`ChatTemplate.pieces`), so the first turn's prompt
tokens are exactly those of :func:`build_chat_prompt` at inference. Prompt and answer are
tokenized apart: the prompt gets no labels, the answer and its separator are learned. Every later
piece is tokenized as it continues the conversation (:func:`continuation_ids`), so the joined ids
are those of the whole conversation text, as the official training code tokenizes it.

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


def continuation_ids(tokenizer, text: str, anchor: str) -> List[int]:
    """Ids of ``text`` as it tokenizes inside a conversation, right after a special token.

    Alone, a non-legacy sentencepiece tokenizer (Phi-3's ``LlamaTokenizer``, ``legacy: false``) puts its
    dummy-prefix ▁ in front of every piece: one extra id per answer and per later prompt, which the model
    would then learn to emit. Tokenized after ``anchor`` (the template's separator), the text gets the ids it
    has in the whole conversation; the anchor (and a lone ▁ such a tokenizer puts before it) is dropped.
    """
    ids = tokenizer(anchor + text, add_special_tokens=False)['input_ids']
    anchor_id = tokenizer.convert_tokens_to_ids(anchor)
    if anchor_id not in ids[:2]:
        raise ValueError(f'{anchor!r} is not a special token of {type(tokenizer).__name__}: cannot tokenize '
                         'conversation pieces in context (add it with tokenizer.add_special_tokens)')
    return ids[ids.index(anchor_id) + 1:]


def encode_conversation(record: dict, tokenizer, template: ChatTemplate, system_message: str, num_tiles: int,
                        num_image_token: int, max_length: int) -> EncodedSample:
    """Tokens and labels of ``record`` whose image (if any) has ``num_tiles`` tiles."""
    num_tiles = num_tiles if record.get('image') else 0
    turns = with_images(conversation_turns(record), [num_tiles] if num_tiles else [], num_image_token)
    input_ids: List[int] = []
    labels: List[int] = []
    truncated = False
    for turn, (prompt, answer) in enumerate(template.pieces(turns, system_message)):
        prompt_ids = tokenizer(prompt)['input_ids'] if turn == 0 else continuation_ids(tokenizer, prompt, template.sep)
        answer_ids = continuation_ids(tokenizer, answer, template.sep)
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
