""""Answer this question on this image" and "how likely is this answer" for each kind of model the
before/after hook evaluates. The hook only calls :func:`backend_for`; each backend uses the model's
own documented entry points.

- :class:`InternVL2QLoRA` (and anything with ``chat(image, question, generation_config=...)`` and
  ``answer_log_likelihood(image, question, answers)``): its processor builds every prompt and tiles
  every image, as in training.
"""
from __future__ import annotations

from typing import List, Optional, Sequence


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


def backend_for(model, generation_config: dict, stop_words: Sequence[str] = (), system: str = '',
                prompt_template=None, tokenizer=None, image_processor=None):
    """The backend that fits ``model`` (unwrapped from DDP by the caller). ``system``,
    ``prompt_template``, ``tokenizer`` and ``image_processor`` are stock ``EvaluateChatHook``'s, for
    models without a processor of their own."""
    if hasattr(model, 'chat') and hasattr(model, 'answer_log_likelihood'):
        return InternVL2ChatBackend(model, generation_config, stop_words)
    raise TypeError(f'BeforeAfterChatHook cannot evaluate a {type(model).__name__}: it needs an InternVL2QLoRA '
                    '(chat + answer_log_likelihood)')
