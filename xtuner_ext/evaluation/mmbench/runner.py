"""One MMBench run: read the TSV, answer what is not answered yet, score, write the files.

Resumable: every answer is appended to ``predictions.jsonl`` as it comes, and a restarted run with
the same settings (``run.json``) asks only the rows missing there.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Optional, Union

from tqdm import tqdm

from .circular import group_of, is_copy, with_rotations
from .extraction import extract_option
from .prompts import language_of
from .scoring import score
from .tsv import MMBenchRow, read_mmbench_tsv
from .writing import PredictionLog, write_json, write_submission

PREDICTIONS = 'predictions.jsonl'
RUN_SETTINGS = 'run.json'
RESULT = 'result.json'


def check_run_settings(path: Path, settings: dict) -> None:
    """Write ``run.json`` on the first run; on a resumed run refuse different settings."""
    if path.is_file():
        old = json.loads(path.read_text(encoding='utf-8'))
        changed = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
        if changed:
            raise ValueError(f'{path.parent} holds answers made with other settings ({", ".join(changed)} differ: '
                             f'{ {k: old.get(k) for k in changed} } -> { {k: settings.get(k) for k in changed} }); '
                             'pass another --work-dir, or delete that folder to start over')
    else:
        write_json(path, settings)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def select_rows(rows, circular: bool, limit: Optional[int]):
    """The first ``limit`` questions (with their copies), plus rotations when ``circular``."""
    if limit is not None:
        keep = {r.index for r in rows if not is_copy(r.index)}
        keep = set(sorted(keep)[:limit])
        rows = [r for r in rows if group_of(r.index) in keep]
    return with_rotations(rows) if circular else list(rows)


def answer_row(answerer, row: MMBenchRow, language: str) -> dict:
    question = answerer.question(row, language)
    prediction = answerer.answer(row.decode_image(), question)
    extraction = extract_option(prediction, row.options)
    return {'index': row.index, 'question': question, 'prediction': prediction, 'letter': extraction.letter,
            'method': extraction.method, 'answer': row.answer, 'category': row.category,
            'l2-category': row.l2_category}


def answer_missing(answerer, rows, language: str, log: PredictionLog, name: str, progress: bool) -> tuple:
    """Answers from ``log`` plus answers to the rows missing there (appended as they come), and
    this session's speed."""
    done = log.load()
    todo = [r for r in rows if r.index not in done]
    if len(todo) < len(rows):
        print(f'resuming: {len(rows) - len(todo)} of {len(rows)} answers already in {log.path}', file=sys.stderr)
    start = time.perf_counter()
    for row in tqdm(todo, total=len(rows), initial=len(rows) - len(todo), desc=name, unit='row',
                    disable=not progress, file=sys.stderr):
        done[row.index] = answer_row(answerer, row, language)
        log.append(done[row.index])
    seconds = time.perf_counter() - start
    return done, {'answered': len(todo), 'seconds': round(seconds, 3),
                  'rows_per_second': round(len(todo) / seconds, 3) if todo else None}


def evaluate(answerer, data_path: Union[str, Path], work_dir: Union[str, Path], language: str = 'auto',
             circular: bool = False, limit: Optional[int] = None, progress: bool = True) -> dict:
    """Answer, score and write ``predictions.jsonl``, ``<tsv name>.xlsx`` and ``result.json``.

    ``answerer``: ``name``, ``settings()``, ``question(row, language)`` (the model family's text) and
    ``answer(image, question)`` (greedy), as ``InternVL2Answerer`` and the LLaVA answerers have."""
    table = read_mmbench_tsv(data_path)
    language = language_of(table.path) if language == 'auto' else language
    rows = select_rows(table.rows, circular, limit)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    check_run_settings(work_dir / RUN_SETTINGS, {'data_path': str(table.path.resolve()),
                                                 'data_sha256': file_sha256(table.path), 'language': language,
                                                 'circular': circular, **answerer.settings()})
    for bad in table.corrupt:
        print(f'skipping corrupt row {bad.describe(table.path)}', file=sys.stderr)
    done, speed = answer_missing(answerer, rows, language, PredictionLog(work_dir / PREDICTIONS), table.name,
                                 progress)
    result = dict(score(rows, done, table.corrupt), data=table.name, split=table.split, language=language,
                  model=answerer.name, this_run=speed)
    write_submission(work_dir / f'{table.name}.xlsx', table, rows, done)
    write_json(work_dir / RESULT, result)
    return result
