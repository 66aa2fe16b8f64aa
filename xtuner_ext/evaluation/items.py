"""The fixed question set of a before/after evaluation: free questions (stock ``EvaluateChatHook``'s
``evaluation_inputs``/``evaluation_images``), held-out records and a few training records, each with
its image checked once up front.

An item is a plain dict ``{'id', 'split', 'image', 'question', 'reference', 'choices'}``: ``split``
is ``'input'``, ``'heldout'`` or ``'train'``; ``choices`` is ``[own reference, other references...]``
for the choice-accuracy score (empty without a reference).
"""
from __future__ import annotations

import logging
from typing import List, Optional, Sequence

from mmengine.logging import print_log
from PIL import Image

from xtuner_ext.data.loaders import load_any
from xtuner_ext.data.validate import resolve_image_path


def _as_list(value) -> list:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def image_problem(path: str) -> Optional[str]:
    """Why the image at ``path`` cannot be used, or None when it decodes."""
    try:
        with Image.open(path) as image:
            image.convert('RGB')
    except (OSError, ValueError) as err:  # missing, unreadable, truncated, not an image
        return f'{type(err).__name__}: {err}'
    return None


def input_items(evaluation_inputs, evaluation_images=None) -> List[dict]:
    """Stock ``EvaluateChatHook`` questions: one image for all of them, or one per question."""
    questions, images = _as_list(evaluation_inputs), _as_list(evaluation_images)
    if images and len(images) not in (1, len(questions)):
        raise ValueError(f'evaluation_images has {len(images)} entries for {len(questions)} evaluation_inputs: '
                         'give one image for all questions or one per question')
    images = images * len(questions) if len(images) == 1 else images or [None] * len(questions)
    return [dict(id=f'input:{i}', split='input', image=image, question=q, reference=None)
            for i, (q, image) in enumerate(zip(questions, images))]


def record_items(data: str, split: str, limit: int, image_folder: Optional[str] = None) -> List[dict]:
    """The first ``limit`` records of ``data`` (any layout :func:`load_any` reads) as items."""
    loaded = load_any(str(data), image_folder)
    items, seen = [], set()
    for index, record in enumerate(loaded.records[:limit]):
        key = f'{split}:{record.get("id", index)}'
        key = key if key not in seen else f'{key}#{index}'  # the LLaVA tutorial's data repeats its ids
        seen.add(key)
        turns = record['conversations']
        image = None
        if record.get('image'):
            resolved, _ = resolve_image_path(record['image'], loaded.image_folder)
            image = resolved or record['image']  # an unusable path is reported by the image check
        items.append(dict(id=key, split=split, image=image,
                          question=turns[0]['value'], reference=turns[1]['value'] if len(turns) > 1 else None,
                          source=f'{loaded.source}:{record.get("source_index", index)}'))
    return items


def training_answers(data: Optional[str], image_folder: Optional[str] = None) -> List[str]:
    """Every answer of the training data: what a copied answer is compared with."""
    if data is None:
        return []
    return [t['value'] for r in load_any(str(data), image_folder).records for t in r['conversations'][1::2]]


def drop_unreadable_images(items: Sequence[dict]) -> List[dict]:
    """Items whose image cannot be read are left out, each with a warning naming file and item."""
    kept = []
    for item in items:
        problem = image_problem(item['image']) if item.get('image') else None
        if problem:
            print_log(f'BeforeAfterChatHook: skipping item {item["id"]} ({item.get("source", "evaluation_inputs")}):'
                      f' its image {item["image"]} cannot be read ({problem}); fix or remove the file',
                      'current', logging.WARNING)
            continue
        kept.append(item)
    return kept


def attach_choices(items: List[dict], candidates: int) -> List[dict]:
    """Give each item with a reference its own reference plus up to ``candidates`` references of the
    next items of the same split (written for other images), in a fixed order."""
    for split in {i['split'] for i in items}:
        group = [i for i in items if i['split'] == split and i.get('reference')]
        for k, item in enumerate(group):
            others = []
            for other in group[k + 1:] + group[:k]:
                if len(others) == candidates:
                    break
                if other['reference'] != item['reference'] and other['reference'] not in others:
                    others.append(other['reference'])
            item['choices'] = [item['reference']] + others if others else []
    for item in items:
        item.setdefault('choices', [])
    return items
