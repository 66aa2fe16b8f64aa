"""One chat turn with an InternLM2 chat model, in the prompt format XTuner trains it with.

The format is XTuner's ``PROMPT_TEMPLATE.internlm2_chat`` (the one our assistant config spells
out), the sequence starts with ``<s>`` as XTuner's ``encode_fn`` does, and decoding is greedy by
default so that two models are compared on training alone.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

Turn = Tuple[str, str]


def chat_template() -> dict:
    from xtuner.utils import PROMPT_TEMPLATE
    return dict(PROMPT_TEMPLATE.internlm2_chat)


def build_prompt(question: str, history: Optional[Sequence[Turn]] = None, system: str = '') -> str:
    """System (if any), earlier turns, then the question, ending where the assistant starts to speak."""
    template = chat_template()
    text = template['SYSTEM'].format(system=system) if system else ''
    for past_question, past_answer in history or ():
        text += template['INSTRUCTION'].format(input=past_question) + past_answer + template['SUFFIX']
        text += template['SEP']
    return text + template['INSTRUCTION'].format(input=question)


def stop_token_ids(tokenizer: PreTrainedTokenizerBase) -> List[int]:
    words = chat_template()['STOP_WORDS']
    ids = tokenizer.convert_tokens_to_ids(words)
    missing = [w for w, i in zip(words, ids) if i is None or i == tokenizer.unk_token_id]
    if missing:
        raise ValueError(f'the tokenizer has no {missing} token: it is not an InternLM2-chat tokenizer')
    return ids + [tokenizer.eos_token_id]


@torch.no_grad()
def chat(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, question: str,
         history: Optional[Sequence[Turn]] = None, system: str = '', max_new_tokens: int = 64) -> str:
    """The model's greedy answer to ``question`` (special tokens removed)."""
    prompt = build_prompt(question, history, system)
    ids = [tokenizer.bos_token_id] + tokenizer.encode(prompt, add_special_tokens=False)
    input_ids = torch.tensor([ids], device=model.device)
    output = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), do_sample=False,
                            max_new_tokens=max_new_tokens, eos_token_id=stop_token_ids(tokenizer),
                            pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(output[0, len(ids):], skip_special_tokens=True).strip()
