"""A deterministic held-out split by image, written atomically as ``train.json`` + ``heldout.json``.

Records that share an image always land in the same part. Which images are held out depends only
on the seed and the image paths (images are ranked by ``sha256(seed, image)``), not on the order
of the records, so the same data and seed give the same split on every machine.

CLI (``xtuner_ext/data/split_cli.py``)::

    python -m xtuner_ext.data.split_cli --data CLoT_cn_2000 --out CLoT_cn_2000 --heldout-count 40 --seed 0
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

from xtuner_ext.fileio import write_atomically

from .records import image_key

TRAIN_FILE = "train.json"
HELDOUT_FILE = "heldout.json"
META_FILE = "split_meta.json"


def split_by_image(records: Sequence[dict], heldout_fraction: float | None = None,
                   heldout_count: int | None = None, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Split ``records`` into ``(train, heldout)`` by image; both keep the input order.

    Give exactly one of ``heldout_fraction`` (share of *images*, rounded up) or ``heldout_count``
    (number of *images*; text-only records count one each). An image's records are never split.
    """
    if (heldout_fraction is None) == (heldout_count is None):
        raise ValueError("give exactly one of heldout_fraction or heldout_count")
    keys = sorted({image_key(r) for r in records})
    if heldout_fraction is not None:
        if not 0 <= heldout_fraction < 1:
            raise ValueError(f"heldout_fraction must be in [0, 1), got {heldout_fraction}")
        heldout_count = math.ceil(heldout_fraction * len(keys))
    if heldout_count < 0:
        raise ValueError(f"heldout_count must be 0 or more images, got {heldout_count}")
    if heldout_count > 0 and heldout_count >= len(keys):
        raise ValueError(f"heldout_count {heldout_count} leaves no training images (the data has {len(keys)} images)")
    ranked = sorted(keys, key=lambda k: hashlib.sha256(f"{seed}\0{k}".encode()).hexdigest())
    held = set(ranked[:heldout_count])
    train = [r for r in records if image_key(r) not in held]
    heldout = [r for r in records if image_key(r) in held]
    return train, heldout


def write_json_atomic(path: str | os.PathLike, data) -> None:
    """Write JSON through :func:`xtuner_ext.fileio.write_atomically` (temporary file, then rename)."""
    write_atomically(path, (json.dumps(data, ensure_ascii=False, indent=2) + "\n").encode("utf-8"))


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _portable_path(path, out_dir: Path) -> str | None:
    """Relative to ``out_dir`` when inside it (so the folder can be moved), else absolute."""
    if path is None:
        return None
    path, base = os.path.abspath(path), os.path.abspath(out_dir)
    return os.path.relpath(path, base) if os.path.commonpath([path, base]) == base else path


def write_split(out_dir: str | os.PathLike, train: list[dict], heldout: list[dict], *, seed: int,
                image_folder: str | os.PathLike | None = None, source: str | os.PathLike | None = None) -> dict:
    """Write ``train.json``, ``heldout.json`` (canonical records) and ``split_meta.json`` atomically.

    ``image_folder`` is recorded in the meta file: the records' ``image`` paths stay relative to it,
    so training and the before/after hook use the same image folder as before the split. Paths in
    the meta file are relative to ``out_dir`` when they are inside it, else absolute.
    Returns the meta dict.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {
        "seed": seed,
        "train_file": TRAIN_FILE,
        "heldout_file": HELDOUT_FILE,
        "counts": {
            "train_records": len(train),
            "heldout_records": len(heldout),
            "train_images": len({image_key(r) for r in train}),
            "heldout_images": len({image_key(r) for r in heldout}),
        },
        "image_folder": _portable_path(image_folder, out_dir),
        "source": _portable_path(source, out_dir),
        "source_sha256": file_sha256(source) if source is not None and os.path.isfile(source) else None,
        "heldout_ids": [r.get("id") for r in heldout],
    }
    write_json_atomic(out_dir / TRAIN_FILE, list(train))
    write_json_atomic(out_dir / HELDOUT_FILE, list(heldout))
    write_json_atomic(out_dir / META_FILE, meta)
    return meta
