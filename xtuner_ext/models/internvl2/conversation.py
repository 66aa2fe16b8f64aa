"""InternVL2 chat templates and the one function that builds a chat prompt.

The template strings are InternVL2's own (``internvl/conversation.py``, MPT separator style), not
XTuner's ``internlm2_chat`` template, whose system message differs. Training prompts and ``chat()``
prompts are both built by :func:`build_chat_prompt`, so they cannot drift apart.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

IMG_START_TOKEN = '<img>'
IMG_END_TOKEN = '</img>'
IMG_CONTEXT_TOKEN = '<IMG_CONTEXT>'
IMAGE_PLACEHOLDER = '<image>'

INTERNVL_SYSTEM_MESSAGE = ('你是由上海人工智能实验室联合商汤科技开发的书生多模态大模型，英文名叫InternVL, '
                           '是一个有用无害的人工智能助手。')

Turn = Tuple[str, Optional[str]]


@dataclass(frozen=True)
class ChatTemplate:
    """An MPT-style template: ``system + sep``, then ``role + message + sep`` per message."""

    name: str
    system_template: str
    system_message: str
    roles: Tuple[str, str]
    sep: str

    def header(self, system_message: Optional[str] = None) -> str:
        system = self.system_message if system_message is None else system_message
        return self.system_template.format(system_message=system) + self.sep

    def pieces(self, turns: Sequence[Turn], system_message: Optional[str] = None) -> List[Tuple[str, str]]:
        """(prompt, answer) texts per turn: the prompt ends with the open answer role, the answer
        with the separator ('' when the answer is empty or None). Training labels the answers;
        joined, the pieces are :meth:`render`."""
        out = []
        for i, (question, answer) in enumerate(turns):
            asked = self.roles[0] + question + self.sep if question else self.roles[0]
            out.append(((self.header(system_message) if i == 0 else '') + asked + self.roles[1],
                        answer + self.sep if answer else ''))
        return out

    def render(self, turns: Sequence[Turn], system_message: Optional[str] = None) -> str:
        """Render (question, answer) turns; an empty or None message leaves its role open."""
        return ''.join(prompt + answer for prompt, answer in self.pieces(turns, system_message))


TEMPLATES = {
    t.name: t
    for t in (
        ChatTemplate('internlm2-chat', '<|im_start|>system\n{system_message}', INTERNVL_SYSTEM_MESSAGE,
                     ('<|im_start|>user\n', '<|im_start|>assistant\n'), '<|im_end|>'),
        ChatTemplate('Hermes-2', '<|im_start|>system\n{system_message}', INTERNVL_SYSTEM_MESSAGE,
                     ('<|im_start|>user\n', '<|im_start|>assistant\n'), '<|im_end|>'),
        ChatTemplate('phi3-chat', '<|system|>\n{system_message}', INTERNVL_SYSTEM_MESSAGE,
                     ('<|user|>\n', '<|assistant|>\n'), '<|end|>'),
    )
}


def get_template(name: str) -> ChatTemplate:
    if name not in TEMPLATES:
        raise ValueError(f'chat template {name!r} is not supported; supported templates: {sorted(TEMPLATES)}')
    return TEMPLATES[name]


def image_tokens(num_patches: int, num_image_token: int) -> str:
    """The text that stands for one image of ``num_patches`` tiles."""
    return IMG_START_TOKEN + IMG_CONTEXT_TOKEN * (num_image_token * num_patches) + IMG_END_TOKEN


def expand_image_placeholders(text: str, num_patches_list: Sequence[int], num_image_token: int) -> str:
    """Replace the first ``len(num_patches_list)`` ``<image>`` tags, in order, by image tokens."""
    for num_patches in num_patches_list:
        text = text.replace(IMAGE_PLACEHOLDER, image_tokens(num_patches, num_image_token), 1)
    return text


def with_image_placeholder(question: str, has_image: bool, history: Optional[Sequence[Turn]]) -> str:
    """Official rule: a first-turn question with an image but no ``<image>`` tag gets one in front."""
    if history is None and has_image and IMAGE_PLACEHOLDER not in question:
        return IMAGE_PLACEHOLDER + '\n' + question
    return question


def with_images(turns: Sequence[Turn], num_patches_list: Sequence[int], num_image_token: int) -> List[Turn]:
    """The turns with the official first-question ``<image>`` rule applied and every ``<image>``
    expanded, in order, into its image tokens (one tile count per image)."""
    turns = [(q, a) for q, a in turns]
    if turns:
        first = with_image_placeholder(turns[0][0], bool(num_patches_list), None)
        turns[0] = (first, turns[0][1])
    remaining = list(num_patches_list)
    expanded = []
    for question, answer in turns:
        used = min(question.count(IMAGE_PLACEHOLDER), len(remaining))
        expanded.append((expand_image_placeholders(question, remaining[:used], num_image_token), answer))
        remaining = remaining[used:]
    return expanded


def build_chat_prompt(question: str,
                      history: Optional[Sequence[Turn]] = None,
                      num_patches_list: Sequence[int] = (),
                      num_image_token: int = 256,
                      template: str = 'internlm2-chat',
                      system_message: Optional[str] = None) -> str:
    """The exact prompt ``InternVLChatModel.chat`` sends to the model.

    ``history`` is a list of earlier (question, answer) pairs; ``num_patches_list`` has one tile
    count per image (empty for a text-only question).
    """
    question = with_image_placeholder(question, bool(num_patches_list), history)
    turns = list(history or []) + [(question, None)]
    prompt = get_template(template).render(turns, system_message)
    return expand_image_placeholders(prompt, num_patches_list, num_image_token)
