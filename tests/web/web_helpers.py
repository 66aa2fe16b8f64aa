"""Helpers for the web page tests."""
from pathlib import Path


def native_chat(folder: Path, image: Path, questions: list, max_new_tokens: int) -> list:
    """The answers of the native ``chat()`` to successive questions about one picture (greedy)."""
    from xtuner_ext.models.internvl2 import InternVL2Processor, InternVLChatModel

    model = InternVLChatModel.from_pretrained(folder)
    processor = InternVL2Processor.from_pretrained(folder)
    pixel_values = processor.pixel_values(image).to(model.dtype)
    history, answers = None, []
    for question in questions:
        answer, history = model.chat(processor.tokenizer, pixel_values, question,
                                     dict(max_new_tokens=max_new_tokens, do_sample=False), history=history,
                                     return_history=True)
        answers.append(answer)
    return answers
