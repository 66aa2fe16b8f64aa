"""Each layout users have: CLoT folder (and ex_cn.json one folder up), Oogiri-GO jsonl, generic json/jsonl."""

import json

import pytest

from data_helpers import clot_record, write_image, write_json
from xtuner_ext.data import DataFormatError, load_clot_folder, load_conversations, load_oogiri_jsonl
from xtuner_ext.data.validate import validate_records


def make_clot(root, n=3):
    for i in range(n):
        write_image(root / "ex_images" / f"{i}.jpg")
    return write_json(root / "ex_cn.json", [clot_record(f"ex_images/{i}.jpg", f"梗{i}") for i in range(n)])


def test_clot_folder(tmp_path):
    root = tmp_path / "CLoT_cn_2000"
    make_clot(root)
    loaded = load_clot_folder(root)
    records, image_folder = loaded
    assert image_folder == str(root)
    assert [r["source_index"] for r in records] == [0, 1, 2]
    assert all(r["id"].startswith("clot-") and r["image"] == f"ex_images/{i}.jpg" for i, r in enumerate(records))
    assert validate_records(records, image_folder).ok


def test_clot_json_one_folder_up(tmp_path):
    # `cp -r CLoT_cn_2000 /root/InternLM/datasets` without the target folder: files land one level up.
    datasets = tmp_path / "datasets"
    make_clot(datasets)
    loaded = load_clot_folder(datasets / "CLoT_cn_2000")
    assert loaded.image_folder == str(datasets)
    assert len(loaded.records) == 3
    assert validate_records(loaded.records, loaded.image_folder).ok


def test_clot_folder_given_as_the_json_file(tmp_path):
    path = make_clot(tmp_path / "d")
    assert len(load_clot_folder(path).records) == 3


def test_clot_folder_missing_lists_where_it_looked(tmp_path):
    with pytest.raises(DataFormatError, match=r"no ex_cn.json found; looked in: .*nowhere/ex_cn.json, .*ex_cn.json"):
        load_clot_folder(tmp_path / "nowhere")


def test_clot_not_an_array(tmp_path):
    write_json(tmp_path / "ex_cn.json", {"image": "a.jpg"})
    with pytest.raises(DataFormatError, match="expected a JSON array of records, got a dict"):
        load_clot_folder(tmp_path)


def test_clot_invalid_json_names_line(tmp_path):
    (tmp_path / "ex_cn.json").write_text('[{"image": "a.jpg",\n  oops]', encoding="utf-8")
    with pytest.raises(DataFormatError, match="invalid JSON at line 2"):
        load_clot_folder(tmp_path)


OOGIRI_LINES = [
    {"type": "I2T", "question": None, "image": "100", "text": "第一", "star": 5},
    {"type": "I2T", "question": None, "image": "100", "text": "第二（更多赞）", "star": "1,234"},
    {"type": "I2T", "question": None, "image": "200", "text": "没有赞", "star": None},
    {"type": "T2T", "question": "猫为什么不上班？", "image": None, "text": "它是老板", "star": 7},
    {"type": "IT2T", "question": "补全", "image": "300", "text": "下班", "star": 2},
    {"type": "I2T", "question": None, "image": "400", "text": "png 图", "star": 3},
]


@pytest.fixture
def oogiri(tmp_path):
    images = tmp_path / "images"
    for name in ("100.jpg", "200.jpg", "300.jpg", "400.png"):
        write_image(images / name)
    path = tmp_path / "cn.jsonl"
    path.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in OOGIRI_LINES) + "\n", encoding="utf-8")
    return path, images


def test_oogiri_all(oogiri):
    path, images = oogiri
    loaded = load_oogiri_jsonl(path, images)
    assert [r["star"] for r in loaded.records] == [5, 1234, None, 7, 2, 3]
    assert [r.get("image") for r in loaded.records] == ["100.jpg", "100.jpg", "200.jpg", None, "300.jpg", "400.png"]
    assert [r["source_index"] for r in loaded.records] == [0, 1, 2, 3, 4, 5]
    assert validate_records(loaded.records, loaded.image_folder).ok


@pytest.mark.parametrize("kwargs,expected_texts", [
    (dict(task_types=["I2T"]), ["第一", "第二（更多赞）", "没有赞", "png 图"]),
    (dict(task_types=["T2T", "IT2T"]), ["它是老板", "下班"]),
    (dict(min_stars=5), ["第一", "第二（更多赞）", "它是老板"]),
    (dict(one_answer_per_image=True), ["第二（更多赞）", "没有赞", "它是老板", "下班", "png 图"]),
    (dict(task_types=["I2T"], min_stars=3, one_answer_per_image=True), ["第二（更多赞）", "png 图"]),
])
def test_oogiri_filters(oogiri, kwargs, expected_texts):
    path, images = oogiri
    loaded = load_oogiri_jsonl(path, images, **kwargs)
    assert [r["conversations"][1]["value"] for r in loaded.records] == expected_texts
    assert loaded.stats["read"] == len(OOGIRI_LINES)


def test_oogiri_bad_lines_are_problems_with_index(tmp_path):
    path = tmp_path / "cn.jsonl"
    path.write_text(
        json.dumps(OOGIRI_LINES[3], ensure_ascii=False) + "\n"
        + "{not json\n"
        + json.dumps({"type": "I2T", "image": "1", "text": "x", "star": "lots"}) + "\n"
        + json.dumps({"type": "Q2T", "text": "x"}) + "\n",
        encoding="utf-8")
    loaded = load_oogiri_jsonl(path, tmp_path)
    assert len(loaded.records) == 1
    assert [(p.index, p.code) for p in loaded.problems] == [(1, "invalid_json"), (2, "malformed"), (3, "malformed")]
    assert "cannot parse star 'lots'" in loaded.problems[1].message


def test_oogiri_language_from_file_name(tmp_path):
    path = write_json(tmp_path / "data.jsonl", [])
    with pytest.raises(DataFormatError, match="cannot tell the language"):
        load_oogiri_jsonl(path, tmp_path)
    en = tmp_path / "en.jsonl"
    en.write_text(json.dumps({"type": "I2T", "image": "1", "text": "ha", "star": 1}) + "\n", encoding="utf-8")
    assert load_oogiri_jsonl(en, tmp_path).records[0]["conversations"][0]["value"].startswith("<image>\nLook at")


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
@pytest.mark.parametrize("with_id", [True, False])
def test_generic_conversations(tmp_path, suffix, with_id):
    write_image(tmp_path / "imgs" / "a.jpg")
    records = [{"image": "a.jpg", "conversations": [{"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "A."}]},
               {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello."}]}]
    if with_id:
        records = [{"id": 10 + i, **r} for i, r in enumerate(records)]
    path = tmp_path / f"data{suffix}"
    if suffix == ".json":
        write_json(path, records)
    else:
        path.write_text("\n".join(json.dumps(r) for r in records) + "\n\n", encoding="utf-8")
    loaded = load_conversations(path, tmp_path / "imgs")
    ids = [r["id"] for r in loaded.records]
    assert ids == (["10", "11"] if with_id else [load_conversations(path).records[i]["id"] for i in range(2)])
    assert all(isinstance(i, str) and i for i in ids) and len(set(ids)) == 2
    assert validate_records(loaded.records, loaded.image_folder).ok


def test_generic_non_object_record(tmp_path):
    path = write_json(tmp_path / "d.json", [["not", "a", "record"], clot_record("a.jpg")])
    loaded = load_conversations(path)
    assert [(p.index, p.code) for p in loaded.problems] == [(0, "malformed")]
    assert loaded.records[0]["source_index"] == 1


def test_unsupported_extension(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b\n")
    with pytest.raises(DataFormatError, match="unsupported extension '.csv'"):
        load_conversations(path)
