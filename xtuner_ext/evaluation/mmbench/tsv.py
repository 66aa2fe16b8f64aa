"""Reading the official MMBench / CCBench TSV files.

Layout (``MMBench_DEV_EN.tsv``, ``MMBench_TEST_CN.tsv``, ``CCBench.tsv``, ...): one row per question
with ``index``, ``question``, optional ``hint``, option columns ``A``..``E`` (later ones may be
empty), ``answer`` (absent in test files), ``category``, ``l2-category`` and a base64 ``image``. In
the circular files a rotated copy has ``index + k * 1_000_000`` and its ``image`` cell may hold the
index of the row whose image it shares, as the official readers resolve it.

A row that cannot be asked (bad base64, fewer than two options, an answer that is no option) is
returned as a :class:`CorruptRow` naming its index, line and reason, never silently dropped.
"""
from __future__ import annotations

import base64
import binascii
import io
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Union

import pandas as pd
from PIL import Image

REQUIRED_COLUMNS = ('index', 'question', 'A', 'B', 'image')
OPTION_LETTERS = tuple(string.ascii_uppercase)
IMAGE_REFERENCE_MAX_LEN = 16  # official readers: a shorter image cell is another row's index


@dataclass(frozen=True)
class MMBenchRow:
    index: int
    question: str
    options: Dict[str, str]  # letter -> text, in letter order, empty cells left out
    image: str  # base64
    hint: Optional[str] = None
    answer: Optional[str] = None
    category: Optional[str] = None
    l2_category: Optional[str] = None
    fields: Dict[str, str] = field(default_factory=dict, compare=False)  # the raw TSV cells

    def decode_image(self) -> Image.Image:
        return decode_image(self.image)


@dataclass(frozen=True)
class CorruptRow:
    index: Optional[int]
    line: int  # 1-based line in the TSV (the header is line 1)
    reason: str

    def describe(self, path: Union[str, Path]) -> str:
        return f'{path}:{self.line} (index {self.index}): {self.reason}'


@dataclass
class MMBenchTable:
    path: Path
    columns: List[str]
    rows: List[MMBenchRow]
    corrupt: List[CorruptRow]

    @property
    def split(self) -> str:
        """'dev' when the file carries answers, 'test' otherwise (no answer column, or an empty one)."""
        return 'dev' if any(row.answer is not None for row in self.rows) else 'test'

    @property
    def name(self) -> str:
        return self.path.stem


def decode_image(data: str) -> Image.Image:
    """A base64 image cell as an RGB picture; ``ValueError`` when it is not one."""
    try:
        raw = base64.b64decode(data, validate=True)
        with Image.open(io.BytesIO(raw)) as img:
            return img.convert('RGB')
    except (binascii.Error, OSError, Image.DecompressionBombError) as err:
        raise ValueError(f'image cell is not a base64 picture ({type(err).__name__}: {err})') from err


def _cell(raw: dict, key: str) -> Optional[str]:
    value = raw.get(key)
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    return str(value)


def _check_columns(path: Path, columns: List[str]) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ValueError(f'{path}: missing column(s) {missing}; an MMBench/CCBench TSV needs {list(REQUIRED_COLUMNS)} '
                         f'(got {columns}). Pass an official file such as MMBench_DEV_EN.tsv.')


def _resolve_image(cell: Optional[str], images: Dict[int, str]) -> str:
    if cell is None:
        raise ValueError('image cell is empty')
    if len(cell) < IMAGE_REFERENCE_MAX_LEN:
        if not cell.strip().isdigit() or int(cell) not in images:
            raise ValueError(f'image cell {cell!r} refers to no row of this file')
        return images[int(cell)]
    return cell


def _parse_row(raw: dict, images: Dict[int, str], checked: set) -> MMBenchRow:
    options = {k: v for k in OPTION_LETTERS if (v := _cell(raw, k)) is not None}
    if len(options) < 2:
        raise ValueError(f'needs at least two options, has {sorted(options) or "none"}')
    answer = _cell(raw, 'answer')  # None in test files (no column, or empty cells)
    if answer is not None and answer not in options:
        raise ValueError(f'answer {answer!r} is not one of the options {list(options)}')
    question = _cell(raw, 'question')
    if not question:
        raise ValueError('question is empty')
    image = _resolve_image(_cell(raw, 'image'), images)
    if image not in checked:
        decode_image(image)
        checked.add(image)
    return MMBenchRow(int(raw['index']), question, options, image, _cell(raw, 'hint'), answer,
                      _cell(raw, 'category'), _cell(raw, 'l2-category'),
                      {k: v for k, v in ((k, _cell(raw, k)) for k in raw) if k != 'image' and v is not None})


def _read_frame(path: Path) -> pd.DataFrame:
    # Only empty cells are missing: an option reading "None" or "NA" stays text.
    return pd.read_csv(path, sep='\t', dtype=str, keep_default_na=False, na_values=[''])


def read_mmbench_tsv(path: Union[str, Path]) -> MMBenchTable:
    """All rows of an MMBench-layout TSV; corrupt rows are collected, not raised."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'{path}: no such TSV; pass --data-path to an MMBench/CCBench .tsv file')
    frame = _read_frame(path)
    columns = list(frame.columns)
    _check_columns(path, columns)
    records = frame.to_dict('records')
    images = {int(r['index']): r['image'] for r in records
              if str(r['index']).strip().isdigit() and isinstance(r['image'], str)
              and len(r['image']) >= IMAGE_REFERENCE_MAX_LEN}
    rows, corrupt, seen, checked = [], [], set(), set()
    for line, raw in enumerate(records, start=2):
        index = int(raw['index']) if str(raw['index']).strip().isdigit() else None
        try:
            if index is None:
                raise ValueError(f'index {raw["index"]!r} is not a non-negative integer')
            if index in seen:
                raise ValueError('duplicate index')
            rows.append(_parse_row(raw, images, checked))
            seen.add(index)
        except ValueError as err:
            corrupt.append(CorruptRow(index, line, str(err)))
    return MMBenchTable(path, columns, rows, corrupt)
