"""The page: a picture, a question, and one chat column per model, answers streamed side by side.

Gradio is the field's convention for model demos. The page keeps each model's conversation in
its own per-session state (``chat()`` histories), so a follow-up question continues both
conversations; a new picture starts new ones.
"""
from __future__ import annotations

import os
from typing import List, Optional, Sequence, Tuple

os.environ['GRADIO_ANALYTICS_ENABLED'] = 'False'  # no telemetry, whatever the shell says
import gradio as gr  # noqa: E402

from xtuner_ext.models.internvl2 import IMAGE_PLACEHOLDER  # noqa: E402

from .inputs import DEFAULT_MAX_IMAGE_PIXELS, GenerationSettings, InputError, check_image, check_question  # noqa: E402
from .loading import ModelSlot  # noqa: E402
from .streaming import Turn, stream_turn  # noqa: E402

TITLE = 'InternVL2: base and fine-tuned, side by side'
GREEDY, SAMPLING = 'greedy', 'sampling'
Example = Tuple[str, str]  # (image path, question)


def slot_key(slot: ModelSlot) -> str:
    return ''.join(c for c in slot.label.lower() if c.isalnum())


def slot_header(slot: ModelSlot) -> str:
    header = f'### {slot.label}\n`{slot.source}`'
    return header if slot.ready else f'{header}\n\n**Not loaded:** {slot.error}'


def shown_question(question: str) -> str:
    """The question as the user typed it (``chat()`` stores it with the ``<image>`` tag in front)."""
    return question.replace(IMAGE_PLACEHOLDER + '\n', '', 1)


def to_messages(history: Sequence[Turn], pending: Optional[Tuple[str, str]] = None) -> List[dict]:
    turns = list(history) + ([pending] if pending else [])
    messages = []
    for question, answer in turns:
        messages += [dict(role='user', content=shown_question(question)), dict(role='assistant', content=answer)]
    return messages


def problem(text: str) -> str:
    return f'**Problem:** {text}'


class ChatPage:
    """The handlers behind the page, for ``slots`` (the models, loaded or not)."""

    def __init__(self, slots: Sequence[ModelSlot], max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS):
        self.slots = list(slots)
        self.max_image_pixels = max_image_pixels

    def initial_status(self) -> str:
        broken = [s for s in self.slots if not s.ready]
        if broken:
            return problem(' '.join(f'{s.label}: {s.error}' for s in broken))
        return 'Upload a picture (or click a sample), ask a question, press **Ask**.'

    def reset(self, *_):
        """A new conversation: empty chats and histories."""
        return (self.initial_status(), *([[]] * len(self.slots)), *([[]] * len(self.slots)))

    def ask(self, image: Optional[str], question: Optional[str], max_new_tokens: float, decoding: str,
            temperature: float, top_p: float, *histories):
        """Stream each ready model's answer in turn; input problems become a status message."""
        histories = [list(h or []) for h in histories]
        chats = [to_messages(h) for h in histories]
        try:
            question = check_question(question)
            check_image(image, any(s.chat_model.needs_image for s in self.slots if s.ready), self.max_image_pixels)
            config = GenerationSettings(int(max_new_tokens), decoding == SAMPLING, temperature,
                                        top_p).generation_config()
        except InputError as exc:
            yield problem(str(exc)), *chats, *histories
            return
        for i, slot in enumerate(self.slots):
            if slot.ready:
                for chats[i], histories[i] in self._stream(slot, image, question, histories[i], config):
                    yield f'{slot.label} is answering…', *chats, *histories
        answered = ' and '.join(s.label for s in self.slots if s.ready)
        yield f'Answered by {answered}.', *chats, *histories

    @staticmethod
    def _stream(slot: ModelSlot, image: Optional[str], question: str, history: List[Turn], config: dict):
        """Yield ``(chat messages, history)`` of one column as its answer grows."""
        pixel_values = slot.chat_model.pixel_values(image) if image else None
        for text, new_history in stream_turn(slot.chat_model, pixel_values, question, history, config):
            if new_history is None:
                yield to_messages(history, (question, text)), history
            else:
                yield to_messages(new_history), new_history


def settings_controls(settings: GenerationSettings) -> list:
    """max new tokens, decoding, temperature, top-p: the inputs of :meth:`ChatPage.ask` after the question."""
    with gr.Accordion('Generation settings', open=False):
        return [gr.Slider(1, 2048, value=settings.max_new_tokens, step=1, label='Max new tokens',
                          elem_id='max-new-tokens'),
                gr.Radio([GREEDY, SAMPLING], value=SAMPLING if settings.do_sample else GREEDY,
                         label='Decoding (greedy: the same answers as chat())', elem_id='decoding'),
                gr.Slider(0.05, 2.0, value=settings.temperature, step=0.05, label='Temperature'),
                gr.Slider(0.05, 1.0, value=settings.top_p, step=0.05, label='Top-p')]


def model_columns(slots: Sequence[ModelSlot]) -> list:
    """One column per model: where it came from (or why it is not loaded) above its chat."""
    chats = []
    with gr.Row():
        for slot in slots:
            with gr.Column():
                gr.Markdown(slot_header(slot), elem_id=f'model-{slot_key(slot)}')
                chats.append(gr.Chatbot(label=slot.label, elem_id=f'chat-{slot_key(slot)}', height=420,
                                        render_markdown=False, feedback_options=None,
                                        buttons=['copy', 'copy_all']))  # no "share" to HF Spaces
    return chats


def build_app(slots: Sequence[ModelSlot], examples: Sequence[Example] = (),
              max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, settings: Optional[GenerationSettings] = None
              ) -> gr.Blocks:
    """The page for ``slots``; ``settings`` are the initial generation controls."""
    page = ChatPage(slots, max_image_pixels)
    with gr.Blocks(title=TITLE, analytics_enabled=False) as app:
        gr.Markdown(f'## {TITLE}')
        status = gr.Markdown(page.initial_status(), elem_id='status')
        with gr.Row():
            with gr.Column(scale=1):
                image = gr.Image(type='filepath', label='Picture', elem_id='image', height=280,
                                 sources=['upload', 'clipboard'], buttons=['download', 'fullscreen'])
                question = gr.Textbox(label='Question', lines=2, elem_id='question')
                with gr.Row():
                    ask = gr.Button('Ask', variant='primary', elem_id='ask')
                    new = gr.Button('New conversation', elem_id='new')
                controls = settings_controls(settings or GenerationSettings())
            with gr.Column(scale=2):
                chats = model_columns(slots)
        histories = [gr.State([]) for _ in slots]
        if examples:
            gr.Examples([list(e) for e in examples], inputs=[image, question], label='Held-out samples',
                        elem_id='samples')
        inputs, outputs = [image, question, *controls, *histories], [status, *chats, *histories]
        ask.click(page.ask, inputs, outputs)
        question.submit(page.ask, inputs, outputs)
        for event in (new.click, image.change, *(chat.clear for chat in chats)):  # a new conversation
            event(page.reset, None, outputs)
    return app


__all__ = ['build_app', 'ChatPage', 'to_messages']
