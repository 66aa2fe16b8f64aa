"""Before/after: the same TSV scored for a base and a fine-tuned model, one delta per category.

Greedy decoding on both sides, so every difference comes from training, not sampling.
"""
from __future__ import annotations

from typing import List, Tuple

from .report import percent, table

Line = Tuple[str, float, float]


def _pairs(base: dict, tuned: dict, kind: str) -> List[Line]:
    if kind not in base or kind not in tuned:
        return []
    b, t = base[kind], tuned[kind]
    lines = [(f'{kind} overall', b['overall'], t['overall'])]
    for grouping in ('l2-category', 'category'):
        for name in sorted(set(b.get(grouping, {})) | set(t.get(grouping, {}))):
            lines.append((f'{grouping}: {name}', b.get(grouping, {}).get(name), t.get(grouping, {}).get(name)))
    return lines


def compare_results(base: dict, tuned: dict) -> List[Line]:
    """(label, base accuracy, fine-tuned accuracy) for overall, every l2-category and category;
    circular lines follow when both runs have them."""
    return _pairs(base, tuned, 'vanilla') + _pairs(base, tuned, 'circular')


def delta(before, after) -> str:
    return '-' if before is None or after is None else f'{100 * (after - before):+.1f}'


def render_comparison(base: dict, tuned: dict, names=('base', 'fine-tuned')) -> str:
    lines = compare_results(base, tuned)
    if not lines:
        return 'no accuracy to compare: the TSV has no answers (a test split)'
    rows = [(label, percent(b), percent(t), delta(b, t)) for label, b, t in lines]
    return table(('accuracy (%)', names[0], names[1], 'delta'), rows)


def comparison_json(base: dict, tuned: dict) -> list:
    return [{'label': label, 'base': b, 'finetuned': t, 'delta': None if b is None or t is None else t - b}
            for label, b, t in compare_results(base, tuned)]
