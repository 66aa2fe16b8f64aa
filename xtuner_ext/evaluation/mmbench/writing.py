"""What an MMBench run leaves in its work dir.

- ``predictions.jsonl``: one line per answered row, appended and flushed as each answer comes, so a
  killed run loses at most the row in flight; a torn last line is dropped on the next start.
- ``<tsv name>.xlsx``: the MMBench submission layout, as OpenGVLab/InternVL's evaluation writes it:
  the TSV's columns without ``hint, category, source, image, comment, l2-category``, with
  ``prediction`` after the option columns (the extracted letter, or the raw answer when none was
  found, so the server's own extraction can try).
- ``result.json``: :func:`scoring.score`'s result.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Dict, List, Mapping

import pandas as pd

from ...fileio import write_atomically
from .tsv import OPTION_LETTERS, MMBenchTable

SUBMISSION_DROPPED = ('hint', 'category', 'source', 'image', 'comment', 'l2-category')


class PredictionLog:
    """The resumable ``predictions.jsonl``: index -> record."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def load(self) -> Dict[int, dict]:
        if not self.path.is_file():
            return {}
        lines = self.path.read_bytes().split(b'\n')
        records, kept = {}, []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                if number < len(lines):  # only the last line can be torn by a kill
                    raise ValueError(f'{self.path}:{number} is not JSON; delete the file to start over') from None
                continue
            records[int(record['index'])] = record
            kept.append(line)
        if len(kept) != sum(1 for line in lines if line.strip()):
            write_atomically(self.path, b''.join(line + b'\n' for line in kept))
        return records

    def append(self, record: dict) -> None:
        with open(self.path, 'a', encoding='utf-8') as f:
            f.write(json.dumps(record, ensure_ascii=False) + '\n')
            f.flush()
            os.fsync(f.fileno())


def submission_frame(table: MMBenchTable, rows: List, predictions: Mapping[int, dict]) -> pd.DataFrame:
    columns = [c for c in table.columns if c not in SUBMISSION_DROPPED]
    options = [c for c in columns if c in OPTION_LETTERS]
    at = max(columns.index(c) for c in options) + 1
    columns = columns[:at] + ['prediction'] + columns[at:]
    records = []
    for row in rows:
        if row.index not in predictions:
            continue
        cells = dict(row.fields, index=row.index, **row.options)
        if row.answer is not None:
            cells['answer'] = row.answer
        record = predictions[row.index]
        cells['prediction'] = record['letter'] or record['prediction']
        records.append({c: cells.get(c) for c in columns})
    return pd.DataFrame(records, columns=columns)


def write_submission(path: Path, table: MMBenchTable, rows: List, predictions: Mapping[int, dict]) -> None:
    buffer = io.BytesIO()
    submission_frame(table, rows, predictions).to_excel(buffer, index=False, engine='openpyxl')
    write_atomically(path, buffer.getvalue())


def write_json(path: Path, data) -> None:
    write_atomically(path, (json.dumps(data, ensure_ascii=False, indent=2) + '\n').encode('utf-8'))
