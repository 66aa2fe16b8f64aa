"""Greedy chat with a stock XTuner ``LLaVAModel`` in memory: the image and the prompt built as its
``LLaVADataset`` builds them for training (``<image>`` first, InternLM2-chat format, square padding)."""
from __future__ import annotations

from typing import List, Union

import torch
from PIL import Image

from xtuner_ext.models.internlm2.chat import build_prompt, stop_token_ids

IMAGE_TOKEN = '<image>'
IMAGE_TOKEN_INDEX = -200  # XTuner's placeholder id, replaced by the image features


def pixel_values(image_processor, image: Union[str, Image.Image], pad_to_square: bool = True) -> torch.Tensor:
    from xtuner.dataset.utils import expand2square

    image = Image.open(image).convert('RGB') if isinstance(image, str) else image.convert('RGB')
    if pad_to_square:
        image = expand2square(image, tuple(int(x * 255) for x in image_processor.image_mean))
    return image_processor.preprocess(image, return_tensors='pt')['pixel_values']


def prompt_ids(tokenizer, question: str) -> List[int]:
    """``<s>`` + the chat prompt, with XTuner's image placeholder id where ``<image>`` stands."""
    before, after = build_prompt(f'{IMAGE_TOKEN}\n{question}').split(IMAGE_TOKEN)
    encode = lambda text: tokenizer.encode(text, add_special_tokens=False)  # noqa: E731
    return [tokenizer.bos_token_id] + encode(before) + [IMAGE_TOKEN_INDEX] + encode(after)


@torch.no_grad()
def llava_chat(model, tokenizer, image_processor, image, question: str, max_new_tokens: int = 64,
               pad_to_square: bool = True) -> str:
    """``model``: an ``xtuner.model.LLaVAModel``. Returns the greedy answer, special tokens removed."""
    from xtuner.model.utils import prepare_inputs_labels_for_multimodal

    model.eval()
    pixels = pixel_values(image_processor, image, pad_to_square).to(model.visual_encoder.device,
                                                                      model.visual_encoder.dtype)
    hidden = model.visual_encoder(pixels, output_hidden_states=True).hidden_states[model.visual_select_layer]
    features = model.projector(hidden[:, 1:])  # drop CLS, as in training
    input_ids = torch.tensor([prompt_ids(tokenizer, question)], device=features.device)
    inputs = prepare_inputs_labels_for_multimodal(llm=model.llm, input_ids=input_ids, pixel_values=features)
    output = model.llm.generate(**inputs, do_sample=False, max_new_tokens=max_new_tokens,
                                eos_token_id=stop_token_ids(tokenizer), pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(output[0], skip_special_tokens=True).strip()
