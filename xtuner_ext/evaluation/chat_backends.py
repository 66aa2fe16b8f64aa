""""Answer this question on this image" and "how likely is this answer" for each kind of model the
before/after hook evaluates. The hook only calls :func:`backend_for`; each backend uses the model's
own documented entry points, and all decode greedily.

- :class:`InternVL2QLoRA` (and anything with ``chat(image, question, generation_config=...)`` and
  ``answer_log_likelihood(image, question, answers)``): its processor builds every prompt and tiles
  every image, as in training; the hook's ``system`` replaces the processor's system message.
- stock XTuner ``LLaVAModel``: the prompt from ``system`` + ``prompt_template`` with ``<image>`` first,
  the image padded to a square and run through ``visual_encoder`` + ``projector``, then
  ``prepare_inputs_labels_for_multimodal``, as stock ``EvaluateChatHook`` does it.
- stock XTuner ``SupervisedFinetune`` (text-only LLM fine-tunes): the same prompt, no image.

The hook's ``tokenizer`` (and, for LLaVA, ``image_processor``) encode it: config dicts or objects.
"""
from __future__ import annotations

import contextlib
from typing import List, Optional, Sequence

import torch

from xtuner_ext.models.quantization import eval_mode_keeping_4bit

IMAGE_TOKEN = '<image>'  # XTuner's DEFAULT_IMAGE_TOKEN
IMAGE_TOKEN_INDEX = -200  # XTuner's placeholder id, replaced by the image features
IGNORE_INDEX = -100


def truncate_at_stop_words(text: str, stop_words: Sequence[str]) -> str:
    """The text before the first stop word (generation may run past one inside a token)."""
    cut = min((text.find(w) for w in stop_words if w and w in text), default=-1)
    return (text[:cut] if cut >= 0 else text).strip()


def mean_answer_log_prob(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean log-probability per answer token (labels other than IGNORE_INDEX) of one sequence."""
    targets = labels[1:]
    answer = targets != IGNORE_INDEX
    log_probs = torch.log_softmax(logits[:-1].float(), dim=-1)
    picked = log_probs.gather(-1, targets.clamp(min=0)[:, None])[:, 0]
    return float(picked[answer].mean())


class InternVL2ChatBackend:
    """Greedy ``model.chat`` and ``model.answer_log_likelihood`` of an :class:`InternVL2QLoRA`; a
    non-empty ``system`` replaces its processor's system message while evaluating."""

    def __init__(self, model, generation_config: dict, stop_words: Sequence[str] = (), system: str = ''):
        self.model, self.generation_config, self.stop_words, self.system = model, generation_config, stop_words, system

    @contextlib.contextmanager
    def _system_message(self):
        processor = self.model.processor
        saved = processor.system_message
        processor.system_message = self.system or saved
        try:
            yield
        finally:
            processor.system_message = saved

    def answer(self, image, question: str) -> str:
        with self._system_message():
            text = self.model.chat(image, question, generation_config=dict(self.generation_config))
        return truncate_at_stop_words(text, self.stop_words)

    def answer_batch(self, images: list, questions: List[str]) -> List[str]:
        """Several image questions in one ``generate`` (``chat_batch``), or one by one without it."""
        if not hasattr(self.model, 'chat_batch'):
            return [self.answer(image, question) for image, question in zip(images, questions)]
        with self._system_message():
            texts = self.model.chat_batch(images, questions, generation_config=dict(self.generation_config))
        return [truncate_at_stop_words(text, self.stop_words) for text in texts]

    def score(self, image, question: str, answers: List[str]) -> List[float]:
        with self._system_message():
            return self.model.answer_log_likelihood(image, question, answers)


class TemplatePrompt:
    """Stock ``EvaluateChatHook``'s prompt: ``SYSTEM`` (when ``system`` is given) + ``INSTRUCTION`` of
    ``prompt_template``; its ``STOP_WORDS`` join the hook's stop words."""

    def __init__(self, tokenizer, system: str = '', prompt_template: Optional[dict] = None,
                 stop_words: Sequence[str] = ()):
        template = prompt_template or {}
        self.tokenizer = tokenizer
        self.text = (template.get('SYSTEM', '{system}\n').format(system=system) if system else '') + \
            template.get('INSTRUCTION', '{input}')
        self.stop_words = list(dict.fromkeys([*stop_words, *template.get('STOP_WORDS', [])]))
        self.stop_ids = stop_token_ids(tokenizer, self.stop_words)

    def ids(self, question: str, with_image: bool = False) -> List[int]:
        """Token ids of the prompt; with an image, ``<image>\\n`` leads the question (wherever the record
        had it, as ``llava_map_fn`` puts it) and becomes ``IMAGE_TOKEN_INDEX``; the first chunk carries
        the tokenizer's special tokens, as in stock."""
        question = question.replace(IMAGE_TOKEN, '').strip()  # where LLaVADataset puts it: first
        text = self.text.format(input=f'{IMAGE_TOKEN}\n{question}' if with_image else question, round=1)
        chunks = text.split(IMAGE_TOKEN)
        ids = self.tokenizer.encode(chunks[0])
        for chunk in chunks[1:]:
            ids += [IMAGE_TOKEN_INDEX] + self.tokenizer.encode(chunk, add_special_tokens=False)
        return ids

    def answer_ids(self, answer: str) -> List[int]:
        return self.tokenizer.encode(answer, add_special_tokens=False)

    def generate_kwargs(self) -> dict:
        pad = self.tokenizer.pad_token_id
        return dict(eos_token_id=self.stop_ids, pad_token_id=self.stop_ids[0] if pad is None else pad, use_cache=True)

    def decode(self, ids: torch.Tensor) -> str:
        """The answer up to the first stop token or stop word, special tokens removed."""
        ids = ids.tolist()
        end = next((i for i, t in enumerate(ids) if t in self.stop_ids), len(ids))
        return truncate_at_stop_words(self.tokenizer.decode(ids[:end], skip_special_tokens=True), self.stop_words)


def stop_token_ids(tokenizer, stop_words: Sequence[str]) -> List[int]:
    """EOS plus each stop word that is one token of ``tokenizer`` (generation ends there; longer
    stop words are cut from the decoded text)."""
    ids = [tokenizer.eos_token_id]
    for word in stop_words:
        token = tokenizer.convert_tokens_to_ids(word)
        if token is not None and token != tokenizer.unk_token_id and token not in ids:
            ids.append(token)
    return ids


class CausalLMChatBackend:
    """Greedy answers and answer likelihoods of a plain causal LM (``model.llm``) with a prompt template."""

    def __init__(self, llm, prompt: TemplatePrompt, generation_config: dict):
        self.llm, self.prompt, self.generation_config = llm, prompt, generation_config

    def answer(self, image, question: str) -> str:
        if image is not None:
            raise ValueError('a text-only model got an image item: evaluate it with text-only data')
        ids = torch.tensor([self.prompt.ids(question)], device=self.llm.device)
        with torch.no_grad(), eval_mode_keeping_4bit(self.llm):
            out = self.llm.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                    **self.prompt.generate_kwargs(), **self.generation_config)
        return self.prompt.decode(out[0, ids.shape[1]:])

    def score(self, image, question: str, answers: List[str]) -> List[float]:
        prompt = self.prompt.ids(question)
        scores = []
        with torch.no_grad(), eval_mode_keeping_4bit(self.llm):
            for answer in answers:
                ids = torch.tensor([prompt + self.prompt.answer_ids(answer)], device=self.llm.device)
                labels = ids[0].clone()
                labels[:len(prompt)] = IGNORE_INDEX
                scores.append(mean_answer_log_prob(self.llm(input_ids=ids).logits[0], labels))
        return scores


class LLaVAChatBackend:
    """Greedy answers and answer likelihoods of a stock XTuner ``LLaVAModel``, its inputs built as stock
    ``EvaluateChatHook`` builds them (an item without an image is asked as text only)."""

    def __init__(self, model, prompt: TemplatePrompt, image_processor, generation_config: dict):
        self.model, self.prompt, self.image_processor = model, prompt, image_processor
        self.generation_config = generation_config
        self.device = next(model.parameters()).device

    def _image_features(self, image) -> torch.Tensor:
        from xtuner.dataset.utils import expand2square

        square = expand2square(image, tuple(int(x * 255) for x in self.image_processor.image_mean))
        pixels = self.image_processor.preprocess(square, return_tensors='pt')['pixel_values']
        encoder = self.model.visual_encoder
        hidden = encoder(pixels.to(self.device, encoder.dtype), output_hidden_states=True).hidden_states
        features = self.model.projector(hidden[self.model.visual_select_layer][:, 1:])  # CLS dropped, as in training
        return features.to(self.model.llm.get_input_embeddings().weight.dtype)

    def _inputs(self, features, ids: List[int], labels: Optional[List[int]] = None) -> dict:
        """``prepare_inputs_labels_for_multimodal``'s model inputs (the image features spliced in at
        ``IMAGE_TOKEN_INDEX``), entries it leaves empty dropped."""
        from xtuner.model.utils import prepare_inputs_labels_for_multimodal

        input_ids = torch.tensor([ids], device=self.device)
        inputs = prepare_inputs_labels_for_multimodal(
            llm=self.model.llm, input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
            labels=None if labels is None else torch.tensor([labels], device=self.device), pixel_values=features)
        return {k: v for k, v in inputs.items() if v is not None}

    def answer(self, image, question: str) -> str:
        with torch.no_grad(), eval_mode_keeping_4bit(self.model):
            features = self._image_features(image) if image is not None else None
            inputs = self._inputs(features, self.prompt.ids(question, with_image=image is not None))
            inputs.pop('position_ids', None)  # generate derives them from the attention mask
            out = self.model.llm.generate(**inputs, **self.prompt.generate_kwargs(), **self.generation_config)
        prompt_length = inputs['input_ids'].shape[1] if 'input_ids' in inputs else 0  # from embeds: new tokens only
        return self.prompt.decode(out[0, prompt_length:])

    def score(self, image, question: str, answers: List[str]) -> List[float]:
        scores = []
        with torch.no_grad(), eval_mode_keeping_4bit(self.model):
            features = self._image_features(image) if image is not None else None
            prompt = self.prompt.ids(question, with_image=image is not None)
            for answer in answers:
                answer_ids = self.prompt.answer_ids(answer)
                inputs = self._inputs(features, prompt + answer_ids, [IGNORE_INDEX] * len(prompt) + answer_ids)
                labels = inputs.pop('labels')[0]
                scores.append(mean_answer_log_prob(self.model.llm(**inputs).logits[0], labels))
        return scores


def build_from_config(value):
    """An object from a stock config dict (``dict(type=AutoTokenizer.from_pretrained, ...)``) or as given."""
    if isinstance(value, dict):
        from xtuner.registry import BUILDER
        return BUILDER.build(value)
    return value


def resolve_template(prompt_template):
    """A template dict from a dict or a dotted name (stock configs name it so when resuming)."""
    if isinstance(prompt_template, str):
        from mmengine.utils.misc import get_object_from_string
        return get_object_from_string(prompt_template)
    return prompt_template


def template_conflict(processor, prompt_template) -> Optional[str]:
    """Why ``prompt_template`` is not what an InternVL2 processor builds (None when it is, or absent)."""
    template = resolve_template(prompt_template)
    if not template:
        return None
    own = processor.template
    expected = own.roles[0] + '{input}' + own.sep + own.roles[1]
    if template.get('INSTRUCTION') == expected:
        return None
    return (f'prompt_template INSTRUCTION {template.get("INSTRUCTION")!r} differs from the model folder\'s '
            f'{processor.config.template!r} template ({expected!r})')


def backend_for(model, generation_config: dict, stop_words: Sequence[str] = (), system: str = '',
                prompt_template=None, tokenizer=None, image_processor=None):
    """The backend that fits ``model`` (unwrapped from DDP by the caller). ``system``,
    ``prompt_template``, ``tokenizer`` and ``image_processor`` are stock ``EvaluateChatHook``'s."""
    if hasattr(model, 'chat') and hasattr(model, 'answer_log_likelihood'):
        return InternVL2ChatBackend(model, generation_config, stop_words, system)
    kind = type(model).__name__
    is_llava = hasattr(model, 'visual_encoder') and hasattr(model, 'projector')
    if not hasattr(model, 'llm'):
        raise TypeError(f'BeforeAfterChatHook cannot evaluate a {kind}: it knows InternVL2QLoRA (chat + '
                        'answer_log_likelihood), stock LLaVAModel and text-only SupervisedFinetune (llm + tokenizer)')
    if tokenizer is None:
        raise ValueError(f'BeforeAfterChatHook needs tokenizer=... (as stock EvaluateChatHook) to evaluate a {kind}')
    prompt = TemplatePrompt(tokenizer, system, resolve_template(prompt_template), stop_words)
    if not is_llava:  # stock SupervisedFinetune
        return CausalLMChatBackend(model.llm, prompt, generation_config)
    if image_processor is None:
        raise ValueError(f'BeforeAfterChatHook needs image_processor=... (as stock EvaluateChatHook) to evaluate a '
                         f'{kind}: give it the dataset\'s image_processor')
    return LLaVAChatBackend(model, prompt, image_processor, generation_config)
