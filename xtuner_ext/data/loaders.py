"""Loaders for every layout users have: a CLoT_cn_2000 folder, raw Oogiri-GO jsonl, and generic
InternVL/LLaVA conversation json/jsonl. Each returns :class:`LoadedData` with canonical records.

A record that cannot be parsed at all (a jsonl line that is not JSON, a record that is not an
object) is not silently dropped: it becomes a :class:`Problem` in ``LoadedData.problems`` with its
index. Every record keeps its position in the file as ``source_index``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from .map_fns import OOGIRI_PROMPTS, OOGIRI_TASK_TYPES, clot_map_fn, conversation_map_fn, oogiri_map_fn
from .records import DataFormatError, LoadedData, Problem

CLOT_ANNOTATION = "ex_cn.json"
CLOT_IMAGE_DIR = "ex_images"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")


def read_json_records(path: str | os.PathLike) -> tuple[list[tuple[int, object]], list[Problem]]:
    """Read a ``.json`` array or a ``.jsonl`` file -> ``([(index, raw_record)], problems)``.

    A bad jsonl line is a per-record problem; a file that is missing, not UTF-8, not valid JSON,
    or a ``.json`` that is not an array raises :class:`DataFormatError`.
    """
    path = Path(path)
    if not path.is_file():
        from xtuner_ext.embedded import missing_path_hint
        raise DataFormatError(f"{path}: data file not found." + missing_path_hint(path))
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise DataFormatError(f"{path}: cannot read as UTF-8 text ({err})") from err
    if path.suffix == ".jsonl":
        return _parse_jsonl(path, text)
    if path.suffix != ".json":
        raise DataFormatError(f"{path}: unsupported extension {path.suffix!r}; use .json (an array) or .jsonl")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataFormatError(
            f"{path}: invalid JSON at line {err.lineno} column {err.colno}: {err.msg}"
        ) from err
    if not isinstance(data, list):
        raise DataFormatError(
            f"{path}: expected a JSON array of records, got a {type(data).__name__}; "
            "if this file has one record per line, name it .jsonl"
        )
    return list(enumerate(data)), []


def _parse_jsonl(path: Path, text: str) -> tuple[list[tuple[int, object]], list[Problem]]:
    rows, problems = [], []
    index = 0
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append((index, json.loads(line)))
        except json.JSONDecodeError as err:
            problems.append(Problem(index, "invalid_json", f"line {lineno} is not valid JSON ({err.msg})", str(path)))
        index += 1
    return rows, problems


def _map_rows(rows, map_fn, source: str) -> tuple[list[dict], list[Problem]]:
    records, problems = [], []
    for index, raw in rows:
        if not isinstance(raw, dict):
            problems.append(
                Problem(index, "malformed", f"record is a {type(raw).__name__}, expected a JSON object", source)
            )
            continue
        try:
            record = map_fn(raw)
        except ValueError as err:
            problems.append(Problem(index, "malformed", str(err), source))
            continue
        record["source_index"] = index
        records.append(record)
    return records, problems


def find_clot_annotation(root: str | os.PathLike, annotation: str = CLOT_ANNOTATION) -> Path:
    """Find ``ex_cn.json`` in ``root`` or in ``root``'s parent (where the tutorial's ``cp -r`` can
    leave it). ``root`` may also be the annotation file itself."""
    root = Path(root)
    if root.is_file():
        return root
    looked = [root / annotation, root.parent / annotation]
    for candidate in looked:
        if candidate.is_file():
            return candidate
    raise DataFormatError(
        f"no {annotation} found; looked in: {', '.join(str(p) for p in looked)}. "
        f"Point the path at the CLoT_cn_2000 folder (the one holding {annotation} and {CLOT_IMAGE_DIR}/)."
    )


def load_clot_folder(root: str | os.PathLike, annotation: str = CLOT_ANNOTATION) -> LoadedData:
    """Load the tutorial's ``CLoT_cn_2000/`` folder: ``ex_cn.json`` + ``ex_images/``.

    Also finds ``ex_cn.json`` one folder up. The image folder is the folder holding ``ex_cn.json``
    (its ``image`` fields read ``ex_images/<name>.jpg``).
    """
    path = find_clot_annotation(root, annotation)
    rows, problems = read_json_records(path)
    records, map_problems = _map_rows(rows, clot_map_fn, str(path))
    return LoadedData(
        records, str(path.parent), str(path), problems + map_problems, {"read": len(rows) + len(problems)}
    )


def load_conversations(path: str | os.PathLike, image_folder: str | os.PathLike | None = None) -> LoadedData:
    """Load a generic InternVL/LLaVA conversation ``.json``/``.jsonl`` (adds ``id`` when missing).

    ``image_folder`` defaults to the folder holding the file.
    """
    path = Path(path)
    rows, problems = read_json_records(path)
    records, map_problems = _map_rows(rows, conversation_map_fn, str(path))
    folder = str(image_folder) if image_folder is not None else str(path.parent)
    return LoadedData(records, folder, str(path), problems + map_problems, {"read": len(rows) + len(problems)})


def resolve_image_file(image_dir: str | os.PathLike, image_id: str) -> str:
    """Oogiri-GO image id -> file name relative to ``image_dir``: the first of ``<id>.jpg``,
    ``<id>.jpeg``, ``<id>.png``... that exists, else ``<id>.jpg`` (reported missing by the checks)."""
    if Path(str(image_id)).suffix.lower() in IMAGE_EXTENSIONS:
        return str(image_id)
    for ext in IMAGE_EXTENSIONS:
        if (Path(image_dir) / f"{image_id}{ext}").is_file():
            return f"{image_id}{ext}"
    return f"{image_id}.jpg"


def _language_from_name(path: Path) -> str:
    stem = path.stem.lower()
    for language in OOGIRI_PROMPTS:
        if stem == language or stem.startswith(language + "_") or stem.endswith("_" + language):
            return language
    raise DataFormatError(
        f"{path}: cannot tell the language from the file name; pass language= one of {sorted(OOGIRI_PROMPTS)}"
    )


def load_oogiri_jsonl(
    path: str | os.PathLike,
    image_dir: str | os.PathLike,
    task_types: Iterable[str] | None = None,
    min_stars: int | None = None,
    one_answer_per_image: bool = False,
    language: str | None = None,
) -> LoadedData:
    """Load raw Oogiri-GO jsonl (``cn.jsonl``/``en.jsonl``/``jp.jsonl``) as canonical records.

    Args:
        image_dir: the folder holding the unzipped images (``<id>.jpg``); records' ``image`` is
            relative to it.
        task_types: keep only these of ``I2T``, ``T2T``, ``IT2T`` (default: all). CLoT_cn_2000 is I2T.
        min_stars: keep only records whose ``star`` is at least this; records without a star are dropped.
        one_answer_per_image: keep one answer per image (T2T: per question), the one with most
            stars, the earliest on ties.
        language: ``cn``/``en``/``jp``; by default taken from the file name.
    """
    path = Path(path)
    language = language or _language_from_name(path)
    wanted = set(task_types) if task_types is not None else set(OOGIRI_TASK_TYPES)
    unknown = wanted - set(OOGIRI_TASK_TYPES)
    if unknown:
        raise ValueError(f"unknown task types {sorted(unknown)}; expected some of {OOGIRI_TASK_TYPES}")
    rows, problems = read_json_records(path)
    stats = {"read": len(rows) + len(problems), "dropped_task_type": 0, "dropped_min_stars": 0, "dropped_duplicate_image": 0}

    kept_rows = []
    for index, raw in rows:
        if isinstance(raw, dict) and raw.get("type") in OOGIRI_TASK_TYPES and raw["type"] not in wanted:
            stats["dropped_task_type"] += 1
            continue
        kept_rows.append((index, raw))

    def map_fn(raw: dict) -> dict:
        image_id = raw.get("image")
        name = resolve_image_file(image_dir, image_id) if image_id not in (None, "") else None
        return oogiri_map_fn(raw, language=language, image_name=name)

    records, map_problems = _map_rows(kept_rows, map_fn, str(path))
    if min_stars is not None:
        before = len(records)
        records = [r for r in records if r["star"] is not None and r["star"] >= min_stars]
        stats["dropped_min_stars"] = before - len(records)
    if one_answer_per_image:
        before = len(records)
        records = _best_answer_per_image(records)
        stats["dropped_duplicate_image"] = before - len(records)
    return LoadedData(records, str(image_dir), str(path), problems + map_problems, stats)


def _best_answer_per_image(records: list[dict]) -> list[dict]:
    best: dict[str, dict] = {}
    for record in records:
        key = record.get("image") or record["conversations"][0]["value"]
        current = best.get(key)
        if current is None or (record["star"] or 0) > (current["star"] or 0):
            best[key] = record
    keep = {id(r) for r in best.values()}
    return [r for r in records if id(r) in keep]


def load_any(data: str, image_folder: str | None = None, data_format: str = "auto", **oogiri_filters) -> LoadedData:
    """Load ``data`` as a CLoT folder, an Oogiri-GO jsonl, or a generic conversation file.

    ``data_format="auto"`` picks: a folder or ``ex_cn.json`` -> CLoT; a file whose first record has
    ``type`` and ``text`` -> Oogiri-GO; anything else -> conversations. ``oogiri_filters`` go to
    :func:`load_oogiri_jsonl` (an error for the other formats).
    """
    path = Path(data)
    if data_format == "auto":
        if path.is_dir() or path.name == "ex_cn.json" or (not path.exists() and not path.suffix):
            data_format = "clot"
        else:
            rows, _ = read_json_records(path)
            first = next((raw for _, raw in rows if isinstance(raw, dict)), {})
            data_format = "oogiri" if {"type", "text"} <= set(first) and "conversations" not in first else "conversations"
    if oogiri_filters and data_format != "oogiri":
        raise DataFormatError(f"{path}: Oogiri-GO filters {sorted(oogiri_filters)} given but the data is {data_format}")
    if data_format == "clot":
        loaded = load_clot_folder(path)
        if image_folder is not None:
            loaded.image_folder = str(image_folder)
        return loaded
    if data_format == "oogiri":
        if image_folder is None:
            raise DataFormatError(f"{path}: Oogiri-GO data needs --image-folder (the unzipped images/ folder)")
        return load_oogiri_jsonl(path, image_folder, **oogiri_filters)
    if data_format == "conversations":
        return load_conversations(path, image_folder)
    raise DataFormatError(f"unknown data format {data_format!r}; use auto, clot, oogiri or conversations")


__all__ = [
    "CLOT_ANNOTATION",
    "CLOT_IMAGE_DIR",
    "find_clot_annotation",
    "load_any",
    "load_clot_folder",
    "load_conversations",
    "load_oogiri_jsonl",
    "read_json_records",
    "resolve_image_file",
]
