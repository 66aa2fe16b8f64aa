"""Benchmark inputs shaped like the CLoT tutorial: batches for step timing and a CLoT-like data folder.

Tile counts are 7/5/3/1 per batch of 4 (the issue's reference batch; CLoT's own distribution is not
available here, so the data folder draws uniformly from those four counts). Answers are CLoT-length
jokes (~60 tokens) or, for the worst-case shapes, long enough that every sample is cut at max_length.
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Dict, List

import torch
from PIL import Image

from xtuner_ext.fileio import write_atomically

TILES = (7, 5, 3, 1)
# (width, height) whose InternVL2 tiling (max_dynamic_patch 6, thumbnail) gives the key's tile count
IMAGE_SIZE_FOR_TILES = {1: (320, 320), 3: (896, 448), 5: (900, 900), 7: (1344, 896)}
JOKE = '太阳：我每天准时上班，你们却只会说我晒。月亮：我只上夜班，还被你们说是冷脸。'
QUESTION = '<image>\n请你根据这张图片，讲一个脑洞大开的梗'
# name -> (tiles per sample, answer tokens or None = fill to max_length, max_length)
SHAPES = {'clot': (TILES, 60, 6656), '4x6656': (TILES, None, 6656), '4x8192': (TILES, None, 8192)}


def answer_text(tokenizer, tokens: int) -> str:
    """Joke text repeated to about ``tokens`` tokens."""
    text = JOKE
    while len(tokenizer(text, add_special_tokens=False)['input_ids']) < tokens:
        text += JOKE
    ids = tokenizer(text, add_special_tokens=False)['input_ids'][:tokens]
    return tokenizer.decode(ids)


def record(answer: str) -> dict:
    return {'image': 'bench.jpg', 'conversations': [{'from': 'human', 'value': QUESTION},
                                                    {'from': 'gpt', 'value': answer}]}


def instances(processor, shape: str, repeat: int = 1, seed: int = 0) -> List[dict]:
    """Dataset items (``input_ids``, ``labels``, random ``pixel_values``) for one shape's batch."""
    tiles, answer_tokens, max_length = SHAPES[shape]
    answer = answer_text(processor.tokenizer, answer_tokens or max_length)
    generator = torch.Generator().manual_seed(seed)
    items = []
    for count in tiles * repeat:
        encoded = processor.encode(record(answer), count, max_length)
        size = processor.tiling.image_size
        items.append(dict(input_ids=torch.tensor(encoded.input_ids), labels=torch.tensor(encoded.labels),
                          pixel_values=torch.randn(count, 3, size, size, generator=generator)))
    return items


def write_clot_like_folder(folder: Path, processor, records: int, seed: int = 0) -> Path:
    """A CLoT-style folder (``train.json`` + one image per record, as CLoT's memes) of ``records``
    short-joke records whose images tile to 1/3/5/7 tiles, drawn uniformly; the tile counts are
    checked with the processor. Every image has its own colour, so no two records share pixels (a
    shared image would flatter the frozen-ViT feature cache)."""
    folder.mkdir(parents=True, exist_ok=True)
    for count, size in IMAGE_SIZE_FOR_TILES.items():
        if processor.num_tiles(size) != count:
            raise ValueError(f'an image of {size} tiles to {processor.num_tiles(size)}, not {count}: check the '
                             'processor overrides (max_dynamic_patch=6 expected)')
    rng = random.Random(seed)
    rows = []
    for index in range(records):
        count = rng.choice(sorted(IMAGE_SIZE_FOR_TILES))
        name = f'meme_{index}_{count}.jpg'
        if not (folder / name).is_file():
            pick = random.Random(index)  # one generator per image: three independent channels
            colour = (pick.randrange(256), pick.randrange(256), pick.randrange(256))
            Image.new('RGB', IMAGE_SIZE_FOR_TILES[count], colour).save(folder / name, quality=90)
        joke = f'{JOKE[:rng.randint(12, len(JOKE))]}（{index}）'  # unique: the loader rejects duplicates
        rows.append({'id': f'bench-{index}', 'image': name,
                     'conversations': [{'from': 'human', 'value': QUESTION}, {'from': 'gpt', 'value': joke}]})
    write_atomically(folder / 'train.json', json.dumps(rows, ensure_ascii=False).encode('utf-8'))
    return folder / 'train.json'


def token_counts(batch: Dict[str, torch.Tensor]) -> Dict[str, int]:
    """Real (unpadded) and processed (padded) tokens of a collated batch."""
    data = batch['data']
    processed = data['input_ids'].numel()
    real = int(data['cu_seqlens'][-1]) if 'cu_seqlens' in data else int(data['attention_mask'].sum())
    return dict(real_tokens=real, processed_tokens=processed, tiles=int(data['pixel_values'].shape[0]))
