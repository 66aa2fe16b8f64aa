"""One chat turn, streamed token by token.

The turn *is* the native ``InternVLChatModel.chat`` (same prompt, same generation, same history),
run in a worker thread with a transformers ``TextIteratorStreamer`` attached, so the text the page
shows while generating grows into exactly the answer ``chat()`` returns.
"""
from __future__ import annotations

import threading
from typing import Iterator, List, Optional, Tuple

import torch
from transformers import TextIteratorStreamer

from .loading import ChatModel

Turn = Tuple[str, str]


class _ChatThread(threading.Thread):
    """Runs ``chat()``; ends the streamer even when generation fails, so the reader never hangs."""

    def __init__(self, streamer: TextIteratorStreamer, call):
        super().__init__(daemon=True)
        self.streamer, self.call = streamer, call
        self.result, self.error = None, None

    def run(self):
        try:
            self.result = self.call()
        except BaseException as exc:  # re-raised in the reading thread by stream_turn
            self.error = exc
            self.streamer.end()


def stream_turn(chat_model: ChatModel, pixel_values: Optional[torch.Tensor], question: str,
                history: List[Turn], generation_config: dict) -> Iterator[Tuple[str, Optional[List[Turn]]]]:
    """Yield ``(text so far, None)`` while generating, then ``(answer, new history)`` once.

    ``history`` holds earlier ``(question, answer)`` pairs as ``chat()`` returns them (the first
    question carries the ``<image>`` tag); empty means a new conversation.
    """
    tokenizer = chat_model.processor.tokenizer
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    config = dict(generation_config, streamer=streamer)
    thread = _ChatThread(streamer, lambda: chat_model.model.chat(
        tokenizer, pixel_values, question, config, history=list(history) or None, return_history=True))
    thread.start()
    text = ''
    for piece in streamer:
        text += piece
        yield text, None
    thread.join()
    if thread.error is not None:
        raise thread.error
    answer, new_history = thread.result
    yield answer, new_history


__all__ = ['stream_turn', 'Turn']
