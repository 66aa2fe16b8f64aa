"""Plain-text tables of a result: pure functions of :func:`scoring.score`'s output."""
from __future__ import annotations

from typing import List, Optional, Sequence


def percent(value: Optional[float]) -> str:
    return '-' if value is None else f'{100 * value:.1f}'


def table(header: Sequence[str], rows: List[Sequence[str]]) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    line = lambda cells: '  '.join(str(c).ljust(w) if i == 0 else str(c).rjust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return '\n'.join([line(header), '  '.join('-' * w for w in widths)] + [line(r) for r in rows])


def _accuracy_rows(summary: dict) -> List[Sequence[str]]:
    rows = [('Overall', str(summary['questions']), percent(summary['overall']))]
    for grouping in ('l2-category', 'category'):
        for name, value in summary.get(grouping, {}).items():
            rows.append((f'{grouping}: {name}', '', percent(value)))
    return rows


def render_result(name: str, result: dict) -> str:
    lines = [f'MMBench {name}: {result["answered"]}/{result["rows"]} rows answered, '
             f'{result["unmatched"]} unmatched, {result["corrupt"]} corrupt (skipped)']
    speed = result.get('this_run') or {}
    if speed.get('answered'):
        lines.append(f'this run answered {speed["answered"]} rows in {speed["seconds"]:.1f} s '
                     f'({speed["rows_per_second"]:.2f} rows/s)')
    for kind in ('vanilla', 'circular'):
        if kind in result:
            lines += ['', f'{kind} accuracy (%)', table(('', 'questions', 'accuracy'), _accuracy_rows(result[kind]))]
    if 'vanilla' not in result:
        lines.append('test split: no answers in the file; submit the .xlsx to the MMBench server')
    lines += _listed('unmatched', [f'index {r["index"]}: {r["prediction"][:80]!r}' for r in result['unmatched_rows']])
    lines += _listed('corrupt', [f'line {r["line"]} (index {r["index"]}): {r["reason"]}'
                                 for r in result['corrupt_rows']])
    return '\n'.join(lines)


def _listed(kind: str, items: List[str], shown: int = 5) -> List[str]:
    more = [f'{kind}: ... and {len(items) - shown} more in result.json'] if len(items) > shown else []
    return [f'{kind}: {item}' for item in items[:shown]] + more
