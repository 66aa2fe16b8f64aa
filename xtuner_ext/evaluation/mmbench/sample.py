"""A small MMBench-layout TSV this project draws itself, for tests and the demo.

``make_mmbench_sample(path)`` writes questions about pictures drawn with PIL (which shape, which
colour, how many dots), in the official column order
``index, question, hint, A, B, C, D, answer, category, image, source, l2-category, comment, split``:
base64 JPEG images, three categories under two l2-categories, some hints, counting questions with
only options A and B (C and D empty). ``split='test'`` leaves the ``answer`` column out, as the
MMBench test files do; ``circular_copies=True`` adds rotated copies (index + k * 1_000_000) whose
image cell is the main row's index, as in the official circular files. Same seed, same bytes (on
one Pillow build).
"""
from __future__ import annotations

import base64
import io
import random
from pathlib import Path
from typing import List, Union

import pandas as pd
from PIL import Image, ImageDraw

from ...fileio import write_atomically
from .circular import rotate
from .tsv import MMBenchRow

COLUMNS = ['index', 'question', 'hint', 'A', 'B', 'C', 'D', 'answer', 'category', 'image', 'source', 'l2-category',
           'comment', 'split']
COLOURS = {'red': (220, 40, 40), 'green': (40, 170, 60), 'blue': (40, 80, 220), 'yellow': (240, 210, 40)}
SHAPES = ('circle', 'square', 'triangle', 'cross')
TEXT = {
    'en': dict(shape='Which shape is drawn in the picture?', colour='What colour is the shape?',
               count='How many dots are in the picture?', hint='The background is white.',
               names={**{s: s for s in SHAPES}, **{c: c for c in COLOURS}, 2: 'two', 3: 'three'}),
    'cn': dict(shape='图中画的是什么形状？', colour='图中形状是什么颜色？', count='图中有几个圆点？',
               hint='背景是白色的。',
               names={'circle': '圆形', 'square': '正方形', 'triangle': '三角形', 'cross': '十字',
                      'red': '红色', 'green': '绿色', 'blue': '蓝色', 'yellow': '黄色', 2: '两个', 3: '三个'}),
}
CATEGORIES = {'shape': ('shape_recognition', 'coarse_perception'),
              'colour': ('color_recognition', 'fine-grained_perception'),
              'count': ('counting', 'fine-grained_perception')}


def _draw(shape: str, colour: str, size: int, dots: int, rng: random.Random) -> Image.Image:
    img = Image.new('RGB', (size + rng.randint(0, 96), size), 'white')
    draw, fill, (w, h) = ImageDraw.Draw(img), COLOURS[colour], img.size
    box = (w // 4, h // 4, 3 * w // 4, 3 * h // 4)
    if shape == 'circle':
        draw.ellipse(box, fill=fill)
    elif shape == 'square':
        draw.rectangle(box, fill=fill)
    elif shape == 'triangle':
        draw.polygon([(w // 2, h // 4), (w // 4, 3 * h // 4), (3 * w // 4, 3 * h // 4)], fill=fill)
    else:
        draw.rectangle((w // 2 - 6, h // 4, w // 2 + 6, 3 * h // 4), fill=fill)
        draw.rectangle((w // 4, h // 2 - 6, 3 * w // 4, h // 2 + 6), fill=fill)
    for i in range(dots):
        x = 8 + 14 * i
        draw.ellipse((x, 4, x + 8, 12), fill='black')
    return img


def _base64_jpeg(img: Image.Image) -> str:
    buffer = io.BytesIO()
    img.save(buffer, format='JPEG', quality=90)
    return base64.b64encode(buffer.getvalue()).decode('ascii')


def _options(correct, pool, count: int, rng: random.Random) -> List:
    others = [p for p in pool if p != correct]
    chosen = rng.sample(others, count - 1) + [correct]
    rng.shuffle(chosen)
    return chosen


def _question(index: int, kind: str, rng: random.Random, text: dict) -> MMBenchRow:
    shape, colour, dots = rng.choice(SHAPES), rng.choice(list(COLOURS)), rng.choice((2, 3))
    correct, pool, n = {'shape': (shape, SHAPES, 4), 'colour': (colour, tuple(COLOURS), 4),
                        'count': (dots, (2, 3), 2)}[kind]
    choices = _options(correct, pool, n, rng)
    options = {letter: text['names'][c] for letter, c in zip('ABCD', choices)}
    image = _base64_jpeg(_draw(shape, colour, rng.randint(64, 160), dots, rng))
    category, l2 = CATEGORIES[kind]
    hint = text['hint'] if index % 3 == 0 else None
    return MMBenchRow(index, text[kind], options, image, hint, 'ABCD'[choices.index(correct)], category, l2)


def sample_rows(n_questions: int = 12, seed: int = 0, language: str = 'en') -> List[MMBenchRow]:
    rng = random.Random(seed)
    kinds = [('shape', 'colour', 'count')[i % 3] for i in range(n_questions)]
    return [_question(i, kind, rng, TEXT[language]) for i, kind in enumerate(kinds)]


def _cells(row: MMBenchRow, image_cell: str, split: str) -> dict:
    return {'index': row.index, 'question': row.question, 'hint': row.hint, **row.options, 'answer': row.answer,
            'category': row.category, 'image': image_cell, 'source': 'xtuner_ext', 'l2-category': row.l2_category,
            'comment': None, 'split': split}


def make_mmbench_sample(path: Union[str, Path], n_questions: int = 12, seed: int = 0, split: str = 'dev',
                        language: str = 'en', circular_copies: bool = False) -> Path:
    """Write the sample TSV to ``path`` (atomically) and return it."""
    rows = sample_rows(n_questions, seed, language)
    cells = [_cells(row, row.image, split) for row in rows]
    if circular_copies:
        cells += [_cells(rotate(row, k), str(row.index), split) for row in rows for k in range(1, len(row.options))]
    columns = [c for c in COLUMNS if split == 'dev' or c != 'answer']
    frame = pd.DataFrame(cells, columns=COLUMNS)[columns]
    path = Path(path)
    write_atomically(path, frame.to_csv(sep='\t', index=False).encode('utf-8'))
    return path
