"""Accuracy from answered rows: a pure function of rows, predictions and corrupt rows.

Plain accuracy is over the main rows (index < 1_000_000), as XTuner's and VLMEvalKit's MMBench
scorers do; circular accuracy, when any question has rotated copies, counts a question right only
if all its answered copies are. An unmatched answer (no option letter could be extracted) scores
wrong and is listed; corrupt rows are left out of every denominator and counted separately.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Dict, Iterable, List, Mapping, Optional

from .circular import group_of, groups, is_copy
from .tsv import CorruptRow, MMBenchRow

GROUPINGS = {'category': lambda r: r.category, 'l2-category': lambda r: r.l2_category}


def _accuracy(hits: Iterable[bool]) -> Optional[float]:
    hits = list(hits)
    return sum(hits) / len(hits) if hits else None


def _by(rows: List[MMBenchRow], hit: Mapping[int, bool], key) -> Dict[str, float]:
    buckets = defaultdict(list)
    for row in rows:
        if key(row) is not None:
            buckets[key(row)].append(hit[row.index])
    return {name: _accuracy(values) for name, values in sorted(buckets.items())}


def _summary(rows: List[MMBenchRow], hit: Mapping[int, bool]) -> dict:
    hits = [hit[r.index] for r in rows]
    out = {'questions': len(rows), 'correct': sum(hits), 'overall': _accuracy(hits)}
    for name, key in GROUPINGS.items():
        if any(key(r) is not None for r in rows):
            out[name] = _by(rows, hit, key)
    return out


def _circular_hits(rows: List[MMBenchRow], correct: Mapping[int, bool]) -> Dict[int, bool]:
    return {group: all(correct[r.index] for r in members) for group, members in groups(rows).items()}


def score(rows: List[MMBenchRow], predictions: Mapping[int, dict], corrupt: List[CorruptRow] = ()) -> dict:
    """``predictions``: index -> record with 'prediction' (raw text) and 'letter' (None if unmatched)."""
    answered = [r for r in rows if r.index in predictions]
    unmatched = [{'index': r.index, 'prediction': predictions[r.index]['prediction']}
                 for r in answered if predictions[r.index]['letter'] is None]
    result = {'rows': len(rows) + len(corrupt), 'answered': len(answered), 'unanswered': len(rows) - len(answered),
              'unmatched': len(unmatched), 'unmatched_rows': unmatched, 'corrupt': len(corrupt),
              'corrupt_rows': [{'index': c.index, 'line': c.line, 'reason': c.reason} for c in corrupt]}
    graded = [r for r in answered if r.answer is not None]
    if not graded:
        return result  # a test split: the MMBench server grades the .xlsx
    correct = {r.index: predictions[r.index]['letter'] == r.answer for r in graded}
    main = [r for r in graded if not is_copy(r.index)]
    result['vanilla'] = _summary(main, correct)
    if len(graded) > len(main):
        per_group = _circular_hits(graded, correct)
        result['circular'] = _summary(main, {r.index: per_group[group_of(r.index)] for r in main})
    return result
