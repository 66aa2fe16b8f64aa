"""The before/after report: pure functions from the evaluation state to text.

The state (kept by :class:`~xtuner_ext.engine.before_after_hook.BeforeAfterChatHook`, saved in
checkpoints) is plain JSON-able data::

    {'items':  [{'id', 'split', 'image', 'question', 'reference'}, ...],
     'stages': [{'name': 'before' | 'iter_20' | 'after', 'iter', 'seconds',
                 'answers': {item_id: text}, 'choice_scores': {item_id: [own, other, ...]},
                 'metrics': {split: {metric: value}}}, ...],
     'loss':   [[iteration, loss], ...]}

``render_report`` gives the Markdown, ``render_html`` a self-contained page (thumbnails as data
URIs, the loss curve as inline SVG: it opens offline), ``report_rows`` the JSON lines, and
``write_report`` writes all of them atomically.
"""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Dict, List, Optional

from xtuner_ext.evaluation.metrics import METRICS
from xtuner_ext.fileio import write_atomically

REPORT_NAME = 'before_after'
SPLIT_TITLES = {'heldout': 'held-out items (what it learned)', 'train': 'training items (what it memorised)',
                'input': 'evaluation inputs'}
HIGHER_IS_BETTER = {'rouge_l': True, 'bleu': True, 'distinct_1': True, 'distinct_2': True, 'mean_length': None,
                    'copy_rate': False, 'choice_accuracy': True}


def _fmt(value: Optional[float]) -> str:
    return '–' if value is None else f'{value:.3f}'


def metric_deltas(state: dict) -> Dict[str, Dict[str, tuple]]:
    """``{split: {metric: (first stage value, last stage value, last - first)}}``; the delta is None
    where a value is missing or there is only one stage."""
    stages = state['stages']
    if not stages:
        return {}
    first, last = stages[0]['metrics'], stages[-1]['metrics']
    table = {}
    for split in last:
        row = {}
        for metric in METRICS:
            before, after = first.get(split, {}).get(metric), last[split].get(metric)
            delta = None if before is None or after is None or len(stages) < 2 else after - before
            row[metric] = (before, after, delta)
        table[split] = row
    return table


def _md_cell(text: Optional[str]) -> str:
    return '' if text is None else str(text).replace('|', '\\|').replace('\n', ' ')


def _metrics_markdown(state: dict) -> List[str]:
    first, last = state['stages'][0]['name'], state['stages'][-1]['name']
    lines = []
    for split, row in metric_deltas(state).items():
        lines += [f'### {SPLIT_TITLES.get(split, split)}', '']
        if len(state['stages']) == 1:  # nothing to compare yet
            lines += [f'| metric | {first} |', '|---|---|'] + [f'| {m} | {_fmt(b)} |' for m, (b, _, _) in row.items()]
        else:
            lines += [f'| metric | {first} | {last} | delta |', '|---|---|---|---|']
            lines += [f'| {m} | {_fmt(b)} | {_fmt(a)} | {"–" if d is None else f"{d:+.3f}"} |'
                      for m, (b, a, d) in row.items()]
        lines.append('')
    return lines


def _answers_markdown(state: dict) -> List[str]:
    names = [s['name'] for s in state['stages']]
    lines = ['| split | image | question | reference | ' + ' | '.join(names) + ' |',
             '|' + '---|' * (4 + len(names))]
    for item in state['items']:
        answers = [s['answers'].get(item['id']) for s in state['stages']]
        cells = [item['split'], Path(item['image']).name if item.get('image') else '', item['question'],
                 item.get('reference')] + answers
        lines.append('| ' + ' | '.join(_md_cell(c) for c in cells) + ' |')
    return lines


def _loss_line(state: dict) -> str:
    loss = state.get('loss') or []
    if not loss:
        return 'training loss: not logged yet'
    return (f'training loss: {loss[0][1]:.3f} at iteration {loss[0][0]} -> {loss[-1][1]:.3f} at iteration '
            f'{loss[-1][0]} ({len(loss)} points)')


def render_report(state: dict) -> str:
    """The Markdown report: metric table with deltas (first vs last stage), loss, every answer."""
    if not state['stages']:
        return f'# Before / after\n\nNo evaluation has run yet.\n'
    lines = ['# Before / after fine-tuning', '', 'Greedy answers to the same questions on the same images at '
             'each stage: ' + ', '.join(f"{s['name']} (iteration {s['iter']})" for s in state['stages']) + '.',
             '', _loss_line(state), '', '## Metrics', '']
    lines += _metrics_markdown(state)
    lines += ['## Answers', ''] + _answers_markdown(state)
    return '\n'.join(lines) + '\n'


def report_rows(state: dict) -> List[dict]:
    """One JSON row per item and stage."""
    rows = []
    for stage in state['stages']:
        for item in state['items']:
            if item['id'] not in stage['answers']:
                continue
            rows.append(dict(stage=stage['name'], iter=stage['iter'], split=item['split'], id=item['id'],
                             image=item.get('image'), question=item['question'], reference=item.get('reference'),
                             answer=stage['answers'][item['id']],
                             choice_scores=stage.get('choice_scores', {}).get(item['id'])))
    return rows


# ---- HTML ----
def thumbnail_data_uri(path: str, size: int = 128) -> Optional[str]:
    """A JPEG thumbnail as a ``data:`` URI (None when the image cannot be read)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image = image.convert('RGB')
            image.thumbnail((size, size))
            buffer = io.BytesIO()
            image.save(buffer, format='JPEG', quality=80)
    except (OSError, ValueError):
        return None
    return 'data:image/jpeg;base64,' + base64.b64encode(buffer.getvalue()).decode('ascii')


def loss_svg(loss: List[List[float]], width: int = 480, height: int = 160) -> str:
    """The training-loss curve as an inline SVG polyline, with its first and last values labelled."""
    if len(loss) < 2:
        return '<p>training loss: fewer than two points logged</p>'
    xs, ys = [p[0] for p in loss], [p[1] for p in loss]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    pad = 30

    def point(x, y):
        px = pad + (x - x0) / ((x1 - x0) or 1) * (width - 2 * pad)
        py = height - pad - (y - y0) / ((y1 - y0) or 1) * (height - 2 * pad)
        return f'{px:.1f},{py:.1f}'

    points = ' '.join(point(x, y) for x, y in zip(xs, ys))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
            f'aria-label="training loss"><rect width="100%" height="100%" fill="#fafafa"/>'
            f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{points}"/>'
            f'<text x="{pad}" y="14" font-size="11">loss {ys[0]:.3f} (iter {x0}) → {ys[-1]:.3f} (iter {x1}); '
            f'min {y0:.3f}, max {y1:.3f}</text></svg>')


def _metrics_html(state: dict) -> str:
    first, last = state['stages'][0]['name'], state['stages'][-1]['name']
    parts = []
    for split, row in metric_deltas(state).items():
        body = ''.join(f'<tr><td>{m}</td><td>{_fmt(b)}</td><td>{_fmt(a)}</td>'
                       f'<td class="{_delta_class(m, d)}">{"–" if d is None else f"{d:+.3f}"}</td></tr>'
                       for m, (b, a, d) in row.items())
        parts.append(f'<h3>{html.escape(SPLIT_TITLES.get(split, split))}</h3><table><tr><th>metric</th>'
                     f'<th>{html.escape(first)}</th><th>{html.escape(last)}</th><th>delta</th></tr>{body}</table>')
    return ''.join(parts)


def _delta_class(metric: str, delta: Optional[float]) -> str:
    better = HIGHER_IS_BETTER.get(metric)
    if delta is None or better is None or delta == 0:
        return ''
    return 'up' if (delta > 0) == better else 'down'


def _answers_html(state: dict, thumbnails: Dict[str, Optional[str]]) -> str:
    head = ''.join(f'<th>{html.escape(s["name"])}</th>' for s in state['stages'])
    rows = []
    for item in state['items']:
        uri, name = thumbnails.get(item['id']), Path(item['image']).name if item.get('image') else ''
        image = f'<img src="{uri}" alt="{html.escape(name)}">' if uri else html.escape(name or '(text only)')
        answers = ''.join(f'<td>{html.escape(s["answers"].get(item["id"], "–"))}</td>' for s in state['stages'])
        rows.append(f'<tr><td>{html.escape(item["split"])}</td><td>{image}</td><td>{html.escape(item["question"])}'
                    f'</td><td class="ref">{html.escape(item.get("reference") or "")}</td>{answers}</tr>')
    return (f'<table><tr><th>split</th><th>image</th><th>question</th><th>reference</th>{head}</tr>'
            + ''.join(rows) + '</table>')


STYLE = ('body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin-bottom:1em}'
         'td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top;max-width:22em}'
         'img{max-width:128px;max-height:128px}.ref{background:#f3f8f0}.up{color:#107010}.down{color:#b02020}')


def render_html(state: dict, thumbnails: Dict[str, Optional[str]]) -> str:
    """A self-contained page (no external file or network): metrics, loss curve, answers side by side."""
    if not state['stages']:
        body = '<p>No evaluation has run yet.</p>'
    else:
        body = (f'<h2>Metrics ({html.escape(state["stages"][0]["name"])} → {html.escape(state["stages"][-1]["name"])})'
                f'</h2>{_metrics_html(state)}<h2>Training loss</h2>{loss_svg(state.get("loss") or [])}'
                f'<h2>Answers</h2>{_answers_html(state, thumbnails)}')
    return (f'<!DOCTYPE html><html lang="zh"><head><meta charset="utf-8"><title>Before / after fine-tuning</title>'
            f'<style>{STYLE}</style></head><body><h1>Before / after fine-tuning</h1>{body}</body></html>\n')


def write_report(work_dir, state: dict, thumbnails: Dict[str, Optional[str]]) -> Path:
    """Write ``before_after.{jsonl,md,html}`` and ``before_after_metrics.json`` atomically; returns
    the HTML path."""
    work_dir = Path(work_dir)
    jsonl = ''.join(json.dumps(row, ensure_ascii=False) + '\n' for row in report_rows(state))
    write_atomically(work_dir / f'{REPORT_NAME}.jsonl', jsonl.encode('utf-8'))
    write_atomically(work_dir / f'{REPORT_NAME}.md', render_report(state).encode('utf-8'))
    metrics = {s['name']: dict(iter=s['iter'], metrics=s['metrics']) for s in state['stages']}
    write_atomically(work_dir / f'{REPORT_NAME}_metrics.json',
                     json.dumps(metrics, ensure_ascii=False, indent=1).encode('utf-8'))
    page = work_dir / f'{REPORT_NAME}.html'
    write_atomically(page, render_html(state, thumbnails).encode('utf-8'))
    return page


def render_summary(work_dir) -> str:
    """A short text table of the metric deltas (first vs last stage) and where the report is: what
    ``make demo`` prints at the end."""
    work_dir = Path(work_dir)
    metrics_file = work_dir / f'{REPORT_NAME}_metrics.json'
    if not metrics_file.is_file():
        return f'no before/after report in {work_dir} (is BeforeAfterChatHook in the config\'s custom_hooks?)'
    stages = json.loads(metrics_file.read_text(encoding='utf-8'))
    names = list(stages)
    first, last = stages[names[0]]['metrics'], stages[names[-1]]['metrics']
    lines = [f'before/after report: {work_dir / (REPORT_NAME + ".html")} (and .md, .jsonl)',
             f'{"split":<8} {"metric":<16} {names[0]:>8} {names[-1]:>8} {"delta":>8}']
    for split, values in last.items():
        for metric in METRICS:
            before, after = first.get(split, {}).get(metric), values.get(metric)
            delta = '–' if before is None or after is None else f'{after - before:+.3f}'
            lines.append(f'{split:<8} {metric:<16} {_fmt(before):>8} {_fmt(after):>8} {delta:>8}')
    return '\n'.join(lines)
