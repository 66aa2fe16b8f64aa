"""Every map function from one table of (name, function, record, expected) cases."""

import pytest

from xtuner_ext.data.map_fns import (
    OOGIRI_PROMPTS,
    clot_llava_map_fn,
    clot_map_fn,
    conversation_llava_map_fn,
    conversation_map_fn,
    oogiri_map_fn,
    parse_star,
)
from xtuner_ext.data.records import CLOT_HUMAN_VALUE, CLOT_PROMPT


class IdWithPrefix:
    """Compares equal to any str id starting with ``prefix`` (ids are content hashes)."""

    def __init__(self, prefix):
        self.prefix = prefix

    def __eq__(self, other):
        return isinstance(other, str) and other.startswith(self.prefix) and len(other) == len(self.prefix) + 12

    def __repr__(self):
        return f"<id {self.prefix}...>"


def turns(*pairs):
    return [{"from": role, "value": value} for role, value in pairs]


CLOT = {"image": "ex_images/a.jpg", "conversations": turns(("human", CLOT_HUMAN_VALUE), ("gpt", "猜猜哪个夹的是狗屎"))}
CN = OOGIRI_PROMPTS["cn"]

CASES = [
    ("clot record gets id and task type", clot_map_fn, CLOT,
     {**CLOT, "id": IdWithPrefix("clot-"), "task_type": "I2T"}),
    ("clot image as one-element list", clot_map_fn, {**CLOT, "image": ["ex_images/a.jpg"]},
     {**CLOT, "id": IdWithPrefix("clot-"), "task_type": "I2T"}),
    ("clot keeps an existing id", clot_map_fn, {**CLOT, "id": "x1"}, {**CLOT, "id": "x1", "task_type": "I2T"}),
    ("generic int id becomes str", conversation_map_fn, {**CLOT, "id": 7}, {**CLOT, "id": "7"}),
    ("generic without id", conversation_map_fn, CLOT, {**CLOT, "id": IdWithPrefix("conv-")}),
    ("generic text-only drops empty image", conversation_map_fn,
     {"image": None, "conversations": turns(("human", "hi"), ("gpt", "yo"))},
     {"conversations": turns(("human", "hi"), ("gpt", "yo")), "id": IdWithPrefix("conv-")}),
    ("generic OpenAI messages become turns", conversation_map_fn,
     {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "你是谁"},
                   {"role": "assistant", "content": "我是小助手"}]},
     {"conversations": turns(("human", "你是谁"), ("gpt", "我是小助手")), "id": IdWithPrefix("conv-")}),
    ("generic keeps extra keys", conversation_map_fn, {**CLOT, "id": "a", "star": 3}, {**CLOT, "id": "a", "star": 3}),
    ("generic leaves two images for the checks", conversation_map_fn, {**CLOT, "id": "a", "image": ["x", "y"]},
     {**CLOT, "id": "a", "image": ["x", "y"]}),
    ("oogiri I2T", oogiri_map_fn, {"type": "I2T", "question": None, "image": "5651380", "text": "不是故意的！", "star": 5},
     {"image": "5651380.jpg", "conversations": turns(("human", f"<image>\n{CLOT_PROMPT}"), ("gpt", "不是故意的！")),
      "task_type": "I2T", "star": 5, "oogiri_image_id": "5651380", "id": IdWithPrefix("oogiri-cn-")}),
    ("oogiri T2T with question, star with comma", oogiri_map_fn,
     {"type": "T2T", "question": "为什么猫不上班？", "image": None, "text": "因为它是老板。", "star": "1,234"},
     {"conversations": turns(("human", CN["T2T"] + "为什么猫不上班？"), ("gpt", "因为它是老板。")),
      "task_type": "T2T", "star": 1234, "oogiri_image_id": None, "id": IdWithPrefix("oogiri-cn-")}),
    ("oogiri IT2T image and question, null star", oogiri_map_fn,
     {"type": "IT2T", "question": "他说了什么？", "image": 42, "text": "下班！", "star": None},
     {"image": "42.jpg", "conversations": turns(("human", f"<image>\n{CN['IT2T']}\n他说了什么？"), ("gpt", "下班！")),
      "task_type": "IT2T", "star": None, "oogiri_image_id": "42", "id": IdWithPrefix("oogiri-cn-")}),
    ("oogiri T2T with the question inside the image", oogiri_map_fn,
     {"type": "T2T", "question": None, "image": "q7", "text": "はい", "star": 0},
     {"image": "q7.jpg", "conversations": turns(("human", f"<image>\n{CN['T2T']}"), ("gpt", "はい")),
      "task_type": "T2T", "star": 0, "oogiri_image_id": "q7", "id": IdWithPrefix("oogiri-cn-")}),
    ("clot to xtuner llava conversation", clot_llava_map_fn, CLOT,
     {"conversation": [{"input": CLOT_HUMAN_VALUE, "output": "猜猜哪个夹的是狗屎"}],
      "id": IdWithPrefix("clot-"), "image": "ex_images/a.jpg"}),
    ("generic multi-turn to xtuner conversation, tag moved first", conversation_llava_map_fn,
     {"id": "m", "image": "a.jpg", "conversations": turns(("human", "Describe <image>"), ("gpt", "A dog."),
                                                         ("human", "Color?"), ("gpt", "Brown."))},
     {"conversation": [{"input": "<image>\nDescribe", "output": "A dog."}, {"input": "Color?", "output": "Brown."}],
      "id": "m", "image": "a.jpg"}),
]


@pytest.mark.parametrize("name,map_fn,record,expected", CASES, ids=[c[0] for c in CASES])
def test_map_fn(name, map_fn, record, expected):
    snapshot = repr(record)
    assert map_fn(record) == expected
    assert repr(record) == snapshot, "map functions must not modify their input"


def test_ids_are_deterministic_and_content_based():
    assert clot_map_fn(CLOT)["id"] == clot_map_fn(dict(CLOT))["id"]
    other = {**CLOT, "conversations": turns(("human", CLOT_HUMAN_VALUE), ("gpt", "另一个梗"))}
    assert clot_map_fn(CLOT)["id"] != clot_map_fn(other)["id"]


@pytest.mark.parametrize("value,expected", [(5, 5), (0, 0), (5.0, 5), ("12", 12), (" 1,234 ", 1234),
                                            ("1,234,567", 1234567), (None, None), ("", None), ("null", None)])
def test_parse_star(value, expected):
    assert parse_star(value) == expected


@pytest.mark.parametrize("value", ["abc", "1,23", -3, 2.5, True, "12 stars"])
def test_parse_star_rejects_garbage(value):
    with pytest.raises(ValueError, match="star"):
        parse_star(value)


def test_oogiri_unknown_type_is_an_error():
    with pytest.raises(ValueError, match="unknown Oogiri-GO type 'X2T'"):
        oogiri_map_fn({"type": "X2T", "text": "a"})
