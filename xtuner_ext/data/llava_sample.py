"""A tiny stand-in for the LLaVA tutorial's data: one generated image, a few multi-turn records in its
format (``id``, ``image``, ``conversations``; ``<image>`` in the first human turn; duplicate ids as in
``unique_data.json``). Deterministic, so tests and demos train on the same bytes."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image

from xtuner_ext.fileio import write_atomically

IMAGE = 'test_img/oph.png'
RECORDS = [
    {'id': '4672496731', 'image': IMAGE, 'conversations': [
        {'from': 'human', 'value': '<image>\nDescribe this image.'},
        {'from': 'gpt', 'value': 'A doctor is testing the eyes of a patient.'},
        {'from': 'human', 'value': 'What is the equipment in the image?'},
        {'from': 'gpt', 'value': 'It is a phoropter.'}]},
    {'id': '123456789', 'image': IMAGE, 'conversations': [
        {'from': 'human', 'value': 'Please describe this picture\n<image>'},
        {'from': 'gpt', 'value': 'A patient sits in front of an eye test machine.'}]},
]


def make_llava_sample(out_dir: Union[str, Path], seed: int = 0, size: int = 56) -> Path:
    """Write ``unique_data.json`` and ``test_img/oph.png`` (a seeded square image) into ``out_dir``."""
    out_dir = Path(out_dir)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    (out_dir / IMAGE).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(out_dir / IMAGE)
    write_atomically(out_dir / 'unique_data.json', json.dumps(RECORDS, ensure_ascii=False, indent=4).encode())
    return out_dir
