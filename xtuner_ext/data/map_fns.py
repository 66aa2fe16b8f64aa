"""Pure map functions: one source record in, one canonical record (or XTuner conversation) out.

Each works as an XTuner ``dataset_map_fn`` (``record -> dict``). They normalise shape only; they
never drop, repair or replace data. Whether a record is usable is decided by
:func:`xtuner_ext.data.validate.check_record`.

* ``clot_map_fn``: a CLoT_cn_2000 ``ex_cn.json`` record -> canonical (adds ``id``).
* ``conversation_map_fn``: a generic InternVL/LLaVA record -> canonical (adds ``id`` when missing).
* ``oogiri_map_fn``: a raw Oogiri-GO jsonl record -> canonical (builds the human prompt per task type).
* ``*_llava_map_fn``: the same, then XTuner's ``llava_map_fn``, giving ``{"conversation": [...]}``
  for the stock ``LLaVADataset`` path.
"""

from __future__ import annotations

import copy
import re

from .records import CLOT_PROMPT, GPT, HUMAN, IMAGE_TOKEN, normalize_image_field, record_id

# Prompts per Oogiri-GO file language and task type. I2T (cn) is the CLoT_cn_2000 prompt, so
# records built from cn.jsonl look like the tutorial's data. T2T (cn) follows CLoT's demo query;
# the other wordings are ours.
OOGIRI_PROMPTS = {
    "cn": {
        "I2T": CLOT_PROMPT,
        "T2T": "请仔细理解所给的问题，想出一个令人感到意外且搞笑的回答。\n",
        "IT2T": "请仔细阅读图片和图片里的文字，为图中留空的部分补充一句令人感到意外且搞笑的话。",
    },
    "en": {
        "I2T": "Look at this image and write a surprising, funny one-liner about it.",
        "T2T": "Read the question carefully and give a surprising, funny answer.\n",
        "IT2T": "Read the image and the text in it, and fill in the blank with something surprising and funny.",
    },
    "jp": {
        "I2T": "この画像を見て、意外で面白い一言を書いてください。",
        "T2T": "質問をよく読んで、意外で面白い答えを考えてください。\n",
        "IT2T": "画像と画像の中の文字をよく読んで、空欄に意外で面白い一言を入れてください。",
    },
}
OOGIRI_TASK_TYPES = ("I2T", "T2T", "IT2T")

_STAR_RE = re.compile(r"^[+]?\d{1,3}(,\d{3})+$|^[+]?\d+$")


def parse_star(value) -> int | None:
    """Oogiri-GO ``star``: ``5``, ``5.0``, ``"1,234"``, ``" 12 "`` -> int; ``None``/``""``/``"null"`` -> None.

    Raises ValueError for anything else (``"abc"``, ``-3``, ``True``, ``2.5``).
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"star must be a number, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"star must not be negative, got {value!r}")
        return value
    if isinstance(value, float):
        if value.is_integer() and value >= 0:
            return int(value)
        raise ValueError(f"star must be a whole non-negative number, got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in ("", "null", "none", "nan"):
            return None
        if _STAR_RE.match(text):
            return int(text.replace(",", "").lstrip("+"))
    raise ValueError(f"cannot parse star {value!r} (expected an int, a string like '1,234', or null)")


def conversation_map_fn(example: dict, id_prefix: str = "conv-") -> dict:
    """Generic InternVL/LLaVA record -> canonical record.

    Keeps every key, deep-copies ``conversations`` (made from OpenAI ``messages`` when that is what the
    record holds, as the assistant data), turns a one-element ``image`` list into a
    string, drops an empty ``image``, and adds a content-derived ``id`` when there is none.
    """
    record = copy.deepcopy(dict(example))
    if "conversations" not in record and "messages" in record:
        record["conversations"] = messages_to_conversations(record.pop("messages"))
    image = normalize_image_field(record.get("image"))
    if image is None:
        record.pop("image", None)
    else:
        record["image"] = image
    if record.get("id") in (None, ""):
        record["id"] = record_id(id_prefix, record)
    elif not isinstance(record["id"], str):
        record["id"] = str(record["id"])  # LLaVADataset needs str ids
    return record


OPENAI_ROLES = {"user": "human", "assistant": "gpt"}


def messages_to_conversations(messages: list) -> list:
    """OpenAI ``messages`` (what XTuner's ``openai_map_fn`` reads) -> human/gpt turns; a system
    message is not a turn and is left out."""
    turns = []
    for message in messages:
        if message["role"] == "system":
            continue
        if message["role"] not in OPENAI_ROLES:
            raise ValueError(f"message role {message['role']!r} is not one of system, user, assistant")
        turns.append({"from": OPENAI_ROLES[message["role"]], "value": message["content"]})
    return turns


def clot_map_fn(example: dict) -> dict:
    """A CLoT_cn_2000 record (``image`` + ``conversations``, no ``id``) -> canonical record."""
    record = conversation_map_fn(example, id_prefix="clot-")
    record.setdefault("task_type", "I2T" if "image" in record else "T2T")
    return record


def oogiri_map_fn(example: dict, language: str = "cn", image_name: str | None = None) -> dict:
    """A raw Oogiri-GO record ``{type, question, image, text, star}`` -> canonical record.

    ``image_name`` is the file name of the image relative to the image folder; by default
    ``"<image id>.jpg"`` (the loader passes the file it actually found). The human turn is the
    language's prompt for the task type; T2T adds the question, IT2T the image and the question.
    Raises ValueError for an unknown ``type``/``language`` or an unparsable ``star``.
    """
    task_type = example.get("type")
    if task_type not in OOGIRI_TASK_TYPES:
        raise ValueError(f"unknown Oogiri-GO type {task_type!r}; expected one of {OOGIRI_TASK_TYPES}")
    if language not in OOGIRI_PROMPTS:
        raise ValueError(f"unknown language {language!r}; expected one of {sorted(OOGIRI_PROMPTS)}")
    prompt = OOGIRI_PROMPTS[language][task_type]
    question = (example.get("question") or "").strip()
    image_id = example.get("image")
    has_image = image_id not in (None, "")
    if has_image and image_name is None:
        image_name = f"{image_id}.jpg"

    if task_type == "T2T" and question:
        human = prompt + question
    elif has_image:  # I2T, IT2T, and T2T whose question is inside the image (jp.jsonl)
        human = f"{IMAGE_TOKEN}\n{prompt}" + (f"\n{question}" if question and task_type != "I2T" else "")
    else:
        human = question  # nothing to ask: left empty, reported by the checks
    record = {
        "conversations": [{"from": HUMAN, "value": human}, {"from": GPT, "value": example.get("text") or ""}],
        "task_type": task_type,
        "star": parse_star(example.get("star")),
        "oogiri_image_id": str(image_id) if has_image else None,
    }
    if has_image:
        record["image"] = image_name
    record["id"] = record_id(f"oogiri-{language}-", {**record, "question": question})
    return record


def _to_llava(record: dict) -> dict:
    # Imported here so that the canonical map functions do not need xtuner installed.
    from xtuner.dataset.map_fns import llava_map_fn

    out = llava_map_fn(copy.deepcopy(record))  # llava_map_fn edits the turns in place
    out.update({k: record[k] for k in ("id", "image") if k in record})
    return out


def clot_llava_map_fn(example: dict) -> dict:
    """CLoT record -> ``{"conversation": [{"input", "output"}...], "id", "image"}`` for ``LLaVADataset``."""
    return _to_llava(clot_map_fn(example))


def conversation_llava_map_fn(example: dict) -> dict:
    """Generic conversation record -> XTuner ``conversation`` format for ``LLaVADataset``."""
    return _to_llava(conversation_map_fn(example))


def oogiri_llava_map_fn(example: dict) -> dict:
    """Raw Oogiri-GO (cn) record -> XTuner ``conversation`` format for ``LLaVADataset``."""
    return _to_llava(oogiri_map_fn(example))
