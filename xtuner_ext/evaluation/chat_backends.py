""""Answer this question on this image" and "how likely is this answer" for each kind of model the
before/after hook evaluates. The hook only calls :func:`backend_for`; each backend uses the model's
own documented entry points.

- :class:`InternVL2QLoRA` (and anything with ``chat(image, question, generation_config=...)`` and
  ``answer_log_likelihood(image, question, answers)``): its processor builds every prompt and tiles
  every image, as in training.
- stock XTuner ``SupervisedFinetune`` (text-only LLM fine-tunes): the prompt is built from
  ``system`` and ``prompt_template`` the way stock ``EvaluateChatHook`` builds it; the hook's
  ``tokenizer`` (a config dict or a tokenizer) encodes it.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch


def truncate_at_stop_words(text: str, stop_words: Sequence[str]) -> str:
    """The text before the first stop word (generation may run past one inside a token)."""
    cut = min((text.find(w) for w in stop_words if w and w in text), default=-1)
    return (text[:cut] if cut >= 0 else text).strip()


class InternVL2ChatBackend:
    """Greedy ``model.chat`` and ``model.answer_log_likelihood`` of an :class:`InternVL2QLoRA`."""

    def __init__(self, model, generation_config: dict, stop_words: Sequence[str] = ()):
        self.model, self.generation_config, self.stop_words = model, generation_config, stop_words

    def answer(self, image, question: str) -> str:
        text = self.model.chat(image, question, generation_config=dict(self.generation_config))
        return truncate_at_stop_words(text, self.stop_words)

    def score(self, image, question: str, answers: List[str]) -> List[float]:
        return self.model.answer_log_likelihood(image, question, answers)


class CausalLMChatBackend:
    """Greedy answers and answer likelihoods of a plain causal LM (``model.llm``) with a prompt template."""

    def __init__(self, llm, tokenizer, generation_config: dict, stop_words: Sequence[str], system: str = '',
                 prompt_template: Optional[dict] = None):
        self.llm, self.tokenizer, self.generation_config = llm, tokenizer, generation_config
        template = prompt_template or {}
        self.stop_words = list(stop_words) + list(template.get('STOP_WORDS', []))
        self.system = template.get('SYSTEM', '{system}\n').format(system=system) if system else ''
        self.instruction = template.get('INSTRUCTION', '{input}')

    def _prompt_ids(self, question: str) -> List[int]:
        return self.tokenizer.encode((self.system + self.instruction).format(input=question, round=1))

    def answer(self, image, question: str) -> str:
        if image is not None:
            raise ValueError('a text-only model got an image item: evaluate it with text-only data')
        ids = torch.tensor([self._prompt_ids(question)], device=self.llm.device)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        with torch.no_grad(), _eval_mode(self.llm):
            out = self.llm.generate(input_ids=ids, attention_mask=torch.ones_like(ids), pad_token_id=pad,
                                    eos_token_id=self.tokenizer.eos_token_id, **self.generation_config)
        return truncate_at_stop_words(self.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True),
                                      self.stop_words)

    def score(self, image, question: str, answers: List[str]) -> List[float]:
        prompt = self._prompt_ids(question)
        scores = []
        with torch.no_grad(), _eval_mode(self.llm):
            for answer in answers:
                ids = prompt + self.tokenizer.encode(answer, add_special_tokens=False)
                logits = self.llm(input_ids=torch.tensor([ids], device=self.llm.device)).logits[0, :-1].float()
                targets = torch.tensor(ids[1:], device=logits.device)
                log_probs = torch.log_softmax(logits, -1).gather(-1, targets[:, None])[:, 0]
                scores.append(float(log_probs[len(prompt) - 1:].mean()))
        return scores


class _eval_mode:
    """Eval mode inside, each module's own flag restored after (no dropout in evaluation)."""

    def __init__(self, module):
        self.modes = [(m, m.training) for m in module.modules()]
        self.module = module

    def __enter__(self):
        self.module.eval()

    def __exit__(self, *exc):
        for m, training in self.modes:
            m.training = training


def build_tokenizer(tokenizer):
    """A tokenizer from a stock config dict (``dict(type=AutoTokenizer.from_pretrained, ...)``) or as given."""
    if isinstance(tokenizer, dict):
        from xtuner.registry import BUILDER
        return BUILDER.build(tokenizer)
    return tokenizer


def backend_for(model, generation_config: dict, stop_words: Sequence[str] = (), system: str = '',
                prompt_template=None, tokenizer=None, image_processor=None):
    """The backend that fits ``model`` (unwrapped from DDP by the caller). ``system``,
    ``prompt_template``, ``tokenizer`` and ``image_processor`` are stock ``EvaluateChatHook``'s, for
    models without a processor of their own."""
    if hasattr(model, 'chat') and hasattr(model, 'answer_log_likelihood'):
        return InternVL2ChatBackend(model, generation_config, stop_words)
    if hasattr(model, 'llm') and not hasattr(model, 'visual_encoder'):  # stock SupervisedFinetune
        if tokenizer is None:
            raise ValueError('BeforeAfterChatHook needs tokenizer=... (as stock EvaluateChatHook) to evaluate a '
                             f'{type(model).__name__}')
        if isinstance(prompt_template, str):  # a dotted name, as stock configs resume with
            from mmengine.utils.misc import get_object_from_string
            prompt_template = get_object_from_string(prompt_template)
        return CausalLMChatBackend(model.llm, tokenizer, generation_config, stop_words, system,
                                   prompt_template)
    raise TypeError(f'BeforeAfterChatHook cannot evaluate a {type(model).__name__}: it knows InternVL2QLoRA '
                    '(chat + answer_log_likelihood) and text-only SupervisedFinetune (llm + tokenizer)')
