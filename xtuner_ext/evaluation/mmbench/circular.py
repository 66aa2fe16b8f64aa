"""Circular evaluation: a question counts only if it is answered right under every rotation of its
options.

The official circular files already hold the rotated copies (``index + k * 1_000_000``); XTuner's
and VLMEvalKit's scorers group rows by ``index % 1_000_000``. For a file without copies,
:func:`with_rotations` makes them the same way, so both kinds are scored alike.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import Dict, Iterable, List

from .tsv import MMBenchRow

CIRCULAR_OFFSET = 1_000_000


def group_of(index: int) -> int:
    return index % CIRCULAR_OFFSET


def is_copy(index: int) -> bool:
    return index >= CIRCULAR_OFFSET


def rotate(row: MMBenchRow, shift: int) -> MMBenchRow:
    """The row with option texts moved ``shift`` letters up (B's text under A, ...) and the answer
    letter following its text; index ``index + shift * 1_000_000``."""
    letters, texts = list(row.options), list(row.options.values())
    options = {letter: texts[(i + shift) % len(texts)] for i, letter in enumerate(letters)}
    answer = None
    if row.answer is not None:
        answer = letters[(letters.index(row.answer) - shift) % len(letters)]
    return replace(row, index=row.index + shift * CIRCULAR_OFFSET, options=options, answer=answer)


def groups(rows: Iterable[MMBenchRow]) -> Dict[int, List[MMBenchRow]]:
    out = defaultdict(list)
    for row in rows:
        out[group_of(row.index)].append(row)
    return dict(out)


def with_rotations(rows: List[MMBenchRow]) -> List[MMBenchRow]:
    """``rows`` plus every missing rotation of each question that has no copies in the file."""
    extra = []
    for members in groups(rows).values():
        main = [r for r in members if not is_copy(r.index)]
        if len(members) == 1 and main:
            extra += [rotate(main[0], k) for k in range(1, len(main[0].options))]
    return list(rows) + extra
