"""The held-out split: deterministic, grouped by image (no leakage), counts, atomic files."""

import json
import subprocess
import sys

import pytest

from data_helpers import clot_record
from xtuner_ext.data import clot_map_fn, load_conversations, split_by_image, write_split
from xtuner_ext.data.records import image_key


def records_with_shared_images(n_images=30, per_image=(1, 2, 3)):
    records = []
    for i in range(n_images):
        for j in range(per_image[i % len(per_image)]):
            records.append(clot_map_fn(clot_record(f"ex_images/{i}.jpg", f"梗 {i}-{j}")))
    records.append(clot_map_fn({"conversations": [{"from": "human", "value": "纯文本"}, {"from": "gpt", "value": "回答"}]}))
    return records


def test_no_image_in_both_parts_and_all_records_kept():
    records = records_with_shared_images()
    train, heldout = split_by_image(records, heldout_fraction=0.2, seed=3)
    assert {image_key(r) for r in train}.isdisjoint({image_key(r) for r in heldout})
    assert sorted(r["id"] for r in train + heldout) == sorted(r["id"] for r in records)
    assert len({image_key(r) for r in heldout}) == 7  # ceil(0.2 * 31 groups)


def test_split_is_deterministic_and_order_independent():
    records = records_with_shared_images()
    first = split_by_image(records, heldout_count=5, seed=0)
    assert first == split_by_image(list(records), heldout_count=5, seed=0)
    shuffled = records[::-1]
    assert {r["id"] for r in split_by_image(shuffled, heldout_count=5, seed=0)[1]} == {r["id"] for r in first[1]}
    assert [r["id"] for r in first[0]] == [r["id"] for r in records if r in first[0]]  # input order kept
    other_seed = split_by_image(records, heldout_count=5, seed=1)[1]
    assert {r["id"] for r in other_seed} != {r["id"] for r in first[1]}


def test_heldout_count_is_in_images():
    train, heldout = split_by_image(records_with_shared_images(), heldout_count=4, seed=0)
    assert len({image_key(r) for r in heldout}) == 4


@pytest.mark.parametrize("kwargs,match", [
    (dict(), "exactly one of"),
    (dict(heldout_fraction=0.1, heldout_count=1), "exactly one of"),
    (dict(heldout_fraction=1.0), r"heldout_fraction must be in \[0, 1\)"),
    (dict(heldout_count=31), "leaves no training images"),
    (dict(heldout_count=-3), "heldout_count must be 0 or more images, got -3"),
])
def test_split_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        split_by_image(records_with_shared_images(), **kwargs)


def test_write_split_files_and_meta(tmp_path):
    records = records_with_shared_images()
    source = tmp_path / "src.json"
    source.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    train, heldout = split_by_image(records, heldout_count=3, seed=7)
    meta = write_split(tmp_path / "out", train, heldout, seed=7, image_folder=tmp_path / "imgs", source=source)
    out = tmp_path / "out"
    assert json.loads((out / "train.json").read_text(encoding="utf-8")) == train
    assert json.loads((out / "heldout.json").read_text(encoding="utf-8")) == heldout
    assert json.loads((out / "split_meta.json").read_text(encoding="utf-8")) == meta
    assert meta["seed"] == 7 and meta["counts"]["heldout_images"] == 3
    assert meta["counts"]["train_records"] + meta["counts"]["heldout_records"] == len(records)
    assert len(meta["source_sha256"]) == 64 and meta["heldout_ids"] == [r["id"] for r in heldout]
    assert sorted(p.name for p in out.iterdir()) == ["heldout.json", "split_meta.json", "train.json"]  # no temp files
    # The written files load back as the same canonical records (ids included, for LLaVADataset).
    assert [r["id"] for r in load_conversations(out / "train.json").records] == [r["id"] for r in train]


def test_split_cli(tmp_path, sample_dir, capsys):
    from xtuner_ext.data.split_cli import main

    out = tmp_path / "split"
    assert main(["--data", str(sample_dir), "--out", str(out), "--heldout-count", "5", "--seed", "1"]) == 0
    stdout = capsys.readouterr().out
    assert "(43 records, 43 images)" in stdout and "(5 records, 5 images)" in stdout
    meta = json.loads((out / "split_meta.json").read_text(encoding="utf-8"))
    assert meta["image_folder"] == str(sample_dir)


def test_split_cli_error_is_one_line(tmp_path, capsys):
    from xtuner_ext.data.split_cli import main

    assert main(["--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "--heldout-count", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no ex_cn.json found; looked in:") and err.count("\n") == 1


@pytest.mark.parametrize("option,value,message", [
    ("--heldout-count", "-3", "must be 1 or more images to hold out, got -3"),
    ("--heldout-count", "0", "must be 1 or more images to hold out, got 0"),
    ("--heldout-count", "2.5", "expected a whole number of images, got '2.5'"),
    ("--heldout-fraction", "0", "must be above 0 and below 1 (a share of the images), got 0.0"),
    ("--heldout-fraction", "-0.2", "must be above 0 and below 1 (a share of the images), got -0.2"),
    ("--heldout-fraction", "1", "must be above 0 and below 1 (a share of the images), got 1.0"),
])
def test_split_cli_rejects_counts_that_split_nothing(sample_dir, tmp_path, option, value, message):
    result = subprocess.run([sys.executable, "-m", "xtuner_ext.data.split_cli", "--data", str(sample_dir), "--out",
                             str(tmp_path / "o"), option, value], capture_output=True, text=True)
    assert result.returncode == 2 and f"argument {option}: {message}" in result.stderr, result.stderr
    assert not (tmp_path / "o").exists()


def test_split_cli_oogiri_with_filters(tmp_path, capsys):
    import json as _json

    from data_helpers import write_image
    from xtuner_ext.data.split_cli import main

    lines = [{"type": "I2T", "question": None, "image": str(i), "text": f"梗{i}", "star": str(i * 1000)} for i in range(6)]
    lines.append({"type": "T2T", "question": "问", "image": None, "text": "答", "star": 9})
    for i in range(6):
        write_image(tmp_path / "images" / f"{i}.jpg")
    (tmp_path / "cn.jsonl").write_text("\n".join(_json.dumps(x, ensure_ascii=False) for x in lines), encoding="utf-8")
    args = ["--data", str(tmp_path / "cn.jsonl"), "--image-folder", str(tmp_path / "images"), "--out", str(tmp_path / "o"),
            "--heldout-count", "1", "--task-types", "I2T", "--min-stars", "2000"]
    assert main(args) == 0
    train = _json.loads((tmp_path / "o" / "train.json").read_text(encoding="utf-8"))
    heldout = _json.loads((tmp_path / "o" / "heldout.json").read_text(encoding="utf-8"))
    assert sorted(r["star"] for r in train + heldout) == [2000, 3000, 4000, 5000] and len(heldout) == 1
    assert main(["--data", str(tmp_path / "o" / "train.json"), "--out", str(tmp_path / "p"), "--heldout-count", "1",
                 "--min-stars", "1"]) == 2
    assert "Oogiri-GO filters ['min_stars'] given but the data is conversations" in capsys.readouterr().err
