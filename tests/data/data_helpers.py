"""Helpers for the data tests: small writers for images, records and json files."""

import io
import json
from pathlib import Path

from PIL import Image

from xtuner_ext.data.records import CLOT_HUMAN_VALUE

TINY_MODEL = Path(__file__).resolve().parents[1] / "fixtures" / "internvl2_tiny"


def write_image(path: Path, size=(32, 24), mode="RGB", fmt=None, colour=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour if colour is not None else 0).save(path, format=fmt)
    return path


def jpeg_bytes(size=(64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, format="JPEG")
    return buffer.getvalue()


def clot_record(image: str, joke: str = "一个好笑的梗") -> dict:
    return {"image": image, "conversations": [{"from": "human", "value": CLOT_HUMAN_VALUE},
                                              {"from": "gpt", "value": joke}]}


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path
