"""The canonical record shape shared by every loader, the split, the checks and training.

A canonical record is the InternVL/LLaVA conversation record::

    {"id": "ex_cn-3f2a9c01d4e5",
     "image": "ex_images/x.jpg",            # relative to the image folder; absent for text-only
     "conversations": [{"from": "human", "value": "<image>\\n请你根据这张图片，讲一个脑洞大开的梗"},
                       {"from": "gpt", "value": "..."}],
     "source_index": 17,                    # position in the file it was read from
     "task_type": "I2T"}                    # optional metadata, kept as extra keys
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass, field
from typing import Any

IMAGE_TOKEN = "<image>"
HUMAN = "human"
GPT = "gpt"

# The human turn of every CLoT_cn_2000 record (camp-3 tutorial, ex_cn.json).
CLOT_PROMPT = "请你根据这张图片，讲一个脑洞大开的梗"
CLOT_HUMAN_VALUE = f"{IMAGE_TOKEN}\n{CLOT_PROMPT}"


class DataFormatError(ValueError):
    """A data file (not a single record) cannot be used: missing, unparsable, wrong shape."""


@dataclass(frozen=True)
class Problem:
    """One reason a record is unusable. ``index`` is the record's position in its source file."""

    index: int
    code: str
    message: str
    source: str | None = None

    def __str__(self) -> str:
        where = f"{self.source}:{self.index}" if self.source else f"record {self.index}"
        return f"{where}: {self.code}: {self.message}"


@dataclass
class LoadedData:
    """What a loader returns: canonical records, the folder their ``image`` paths are relative to,
    the file they came from, records that could not even be parsed, and filter counts."""

    records: list[dict]
    image_folder: str | None
    source: str
    problems: list[Problem] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)

    def __iter__(self):  # allows ``records, image_folder = load_...(...)``
        return iter((self.records, self.image_folder))


def record_id(prefix: str, record: dict) -> str:
    """A deterministic id from the record's content (identical records get identical ids)."""
    content = {k: record.get(k) for k in ("image", "conversations", "question", "text")}
    digest = hashlib.sha1(
        json.dumps(content, ensure_ascii=False, sort_keys=True, default=str).encode("utf-8")
    ).hexdigest()
    return f"{prefix}{digest[:12]}"


def normalize_image_field(image: Any) -> Any:
    """``"a.jpg"`` and ``["a.jpg"]`` -> ``"a.jpg"``; ``None``/``""``/``[]`` -> ``None``.

    Anything else (a list of several paths, a number) is returned unchanged so that the checks can
    report it instead of the map function guessing.
    """
    if isinstance(image, (list, tuple)):
        if len(image) == 0:
            return None
        if len(image) == 1:
            image = image[0]
        else:
            return list(image)
    if image is None or image == "":
        return None
    return image


def image_key(record: dict) -> str:
    """The grouping key of a record for the held-out split: its image, or its id when text-only."""
    image = normalize_image_field(record.get("image"))
    if isinstance(image, str):
        return "image:" + posixpath.normpath(image.replace("\\", "/"))
    return "text:" + str(record.get("id"))
