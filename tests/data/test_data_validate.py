"""A corpus of broken records, built with real broken files; each problem found with its index."""

import json

import pytest

from data_helpers import clot_record, jpeg_bytes, write_image, write_json
from xtuner_ext.data import (
    BadRecordError,
    ImageProblem,
    check_record,
    load_conversations,
    load_rgb_image,
    select_usable_records,
    validate_records,
)


def conv(*pairs):
    return [{"from": role, "value": value} for role, value in pairs]


def build_corpus(root):
    """Write images + ``data.jsonl``; return (path, image folder, {index: expected code or None})."""
    images = root / "images"
    write_image(images / "good.jpg")
    write_image(images / "good2.jpg", size=(40, 20))
    (images / "truncated.jpg").write_bytes(jpeg_bytes((256, 256))[:400])
    (images / "not_an_image.jpg").write_bytes(b"<html>404 not found</html>")
    write_image(images / "cmyk.jpg", mode="CMYK")
    write_image(images / "palette.png", mode="P")
    write_image(images / "gray_alpha.png", mode="LA")
    write_image(images / "deep.png", mode="I;16")
    write_image(images / "float.tif", mode="F")
    write_image(root / "outside.jpg")
    (images / "a_folder.jpg").mkdir()

    good = clot_record("good.jpg", "好梗")
    cases = [
        (good, None),
        (clot_record("nope.jpg"), "missing_image"),
        (clot_record("truncated.jpg"), "corrupt_image"),
        (clot_record("not_an_image.jpg"), "unreadable_image"),
        (clot_record("deep.png"), "unsupported_mode"),
        (clot_record("float.tif"), "unsupported_mode"),
        ({"image": "good2.jpg", "conversations": conv(("human", "讲个梗"), ("gpt", "好"))}, "image_tag_missing"),
        ({"image": "good2.jpg", "conversations": conv(("human", "<image>\n<image>\n讲个梗"), ("gpt", "好"))}, "image_tag_extra"),
        ({"conversations": conv(("human", "<image>\n讲个梗"), ("gpt", "好"))}, "image_tag_extra"),
        (clot_record("good2.jpg", "   "), "empty_answer"),
        ({"image": "good2.jpg", "conversations": conv(("gpt", "先说"), ("human", "<image>\n讲"))}, "role_order"),
        ({"image": "good2.jpg", "conversations": conv(("human", "<image>\n讲"), ("gpt", "好"), ("human", "再讲"))}, "role_order"),
        ({"image": "good2.jpg", "conversations": conv(("system", "s"), ("human", "<image>\n讲"))}, "role_order"),
        (good, "duplicate"),
        (clot_record("../outside.jpg"), "path_escapes_folder"),
        (clot_record(str(root / "outside.jpg")), "path_escapes_folder"),
        (clot_record("sub/../../outside.jpg"), "path_escapes_folder"),
        ({"image": ["good.jpg", "good2.jpg"], "conversations": clot_record("x")["conversations"]}, "multiple_images"),
        ({"image": "good2.jpg"}, "malformed"),
        ({"image": "good2.jpg", "conversations": [{"from": "human", "value": 3}]}, "malformed"),
        (["a", "list"], "malformed"),
        (clot_record("a_folder.jpg"), "unreadable_image"),
        (clot_record("cmyk.jpg", "CMYK 可以转换"), None),
        (clot_record("palette.png", "调色板可以转换"), None),
        (clot_record("gray_alpha.png", "灰度透明可以转换"), None),
        (clot_record("good2.jpg", "文本不同，不算重复"), None),
        ({"id": "dup-id", "conversations": conv(("human", "纯文本"), ("gpt", "一"))}, None),
        ({"id": "dup-id", "conversations": conv(("human", "纯文本"), ("gpt", "二"))}, "duplicate"),
    ]
    path = root / "data.jsonl"
    lines = [json.dumps(record, ensure_ascii=False) for record, _ in cases]
    lines.insert(3, "{this line is not json")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    expected = {}
    for i, (_, code) in enumerate(cases):
        expected[i if i < 3 else i + 1] = code
    expected[3] = "invalid_json"
    return path, images, expected


def test_broken_corpus_every_problem_with_index(tmp_path):
    path, images, expected = build_corpus(tmp_path)
    loaded = load_conversations(path, images)
    report = validate_records(loaded.records, loaded.image_folder, source=loaded.source, load_problems=loaded.problems)
    found = {}
    for problem in report.problems:
        found.setdefault(problem.index, set()).add(problem.code)
        assert str(problem).startswith(f"{path}:{problem.index}: {problem.code}: ")
    for index, code in expected.items():
        if code is None:
            assert index not in found, f"record {index} should be usable, got {found.get(index)}"
        else:
            assert code in found.get(index, set()), f"record {index}: expected {code}, got {found.get(index)}"
    assert report.n_records == len(expected)
    bad = sum(code is not None for code in expected.values())
    assert report.summary_line() == f"checked {len(expected)} records: {len(expected) - bad} usable, {bad} with problems"
    text = report.format()
    assert "problems by code:" in text and text.endswith(report.summary_line())


def test_messages_say_what_to_fix(tmp_path):
    path, images, _ = build_corpus(tmp_path)
    loaded = load_conversations(path, images)
    messages = {}
    for p in validate_records(loaded.records, loaded.image_folder).problems:
        messages[p.code] = messages.get(p.code, "") + p.message + "\n"
    assert "start the first question with '<image>\\n'" in messages["image_tag_missing"]
    assert "leaves the image folder" in messages["path_escapes_folder"]
    assert "save it as 8-bit RGB" in messages["unsupported_mode"]
    assert "same image and conversation as record 0" in messages["duplicate"]
    assert "id 'dup-id' is already used by record 27" in messages["duplicate"]


def test_missing_image_hints_the_right_folder(tmp_path):
    write_image(tmp_path / "ex_images" / "a.jpg")
    problems = check_record(clot_record("ex_images/a.jpg"), 5, str(tmp_path / "CLoT_cn_2000"))
    assert [(p.index, p.code) for p in problems] == [(5, "missing_image")]
    assert f"set image_folder to {tmp_path}" in problems[0].message


def test_check_record_is_cheap_without_decoding(tmp_path):
    (tmp_path / "truncated.jpg").write_bytes(jpeg_bytes((256, 256))[:400])
    record = clot_record("truncated.jpg")
    assert check_record(record, 0, str(tmp_path), check_image=False) == []
    assert [p.code for p in check_record(record, 0, str(tmp_path))] == ["corrupt_image"]


def test_check_record_no_image_folder(tmp_path):
    assert [p.code for p in check_record(clot_record("a.jpg"), 0, None)] == ["missing_image"]


def test_load_rgb_image_raises_with_code(tmp_path):
    write_image(tmp_path / "p.png", mode="P")
    assert load_rgb_image(str(tmp_path / "p.png")).mode == "RGB"
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    with pytest.raises(ImageProblem) as err:
        load_rgb_image(str(tmp_path / "bad.jpg"))
    assert err.value.code == "unreadable_image"


def test_select_usable_records_skip_and_error(tmp_path):
    write_image(tmp_path / "a.jpg")
    records = [clot_record("a.jpg"), clot_record("missing.jpg", "另一个"), clot_record("a.jpg", "第三个")]
    usable, report = select_usable_records(records, str(tmp_path), on_bad_record="skip")
    assert usable == [records[0], records[2]] and len(report.problems) == 1
    with pytest.raises(BadRecordError, match=r"checked 3 records: 2 usable, 1 with problems\nrecord 1: missing_image"):
        select_usable_records(records, str(tmp_path), on_bad_record="error")
    with pytest.raises(ValueError, match="on_bad_record must be"):
        select_usable_records(records, str(tmp_path), on_bad_record="retry")


def test_token_budget_and_would_truncate(tmp_path, tiny_model):
    from xtuner_ext.models.internvl2 import InternVL2Processor

    write_image(tmp_path / "wide.jpg", size=(896, 448))  # a 2x1 grid + thumbnail = 3 tiles
    write_image(tmp_path / "square.jpg", size=(100, 100))  # 1 tile, no thumbnail
    budget = InternVL2Processor.from_pretrained(tiny_model)
    assert budget.num_image_token == 256
    records = [clot_record("wide.jpg"), clot_record("square.jpg", "另一个梗")]
    report = validate_records(records, str(tmp_path), max_length=600, budget=budget)
    assert [i.tiles for i in report.infos] == [3, 1]
    assert [i.image_tokens for i in report.infos] == [768, 256]
    assert all(0 < i.text_tokens < 600 - 256 for i in report.infos)
    assert [(p.index, p.code) for p in report.problems] == [(0, "would_truncate")]
    assert "3 tiles x 256 image" in report.problems[0].message
    assert "tiles per image: 1: 1, 3: 1" in report.format()


def test_first_problems_in_record_order_with_a_count_of_the_rest():
    from xtuner_ext.data.records import Problem
    from xtuner_ext.data.validate import Report

    problems = [Problem(i, 'missing_image', f'image file not found: {i}.jpg', 'd.json') for i in (9, 1, 4, 7)]
    report = Report('d.json', 10, problems)
    assert report.first_problems(2) == ('d.json:1: missing_image: image file not found: 1.jpg; '
                                        'd.json:4: missing_image: image file not found: 4.jpg; and 2 more problem(s)')
    assert report.first_problems(5).count('d.json:') == 4 and 'more' not in report.first_problems(5)
