"""The embedded sample: CLoT_cn_2000 layout, >= 40 records, deterministic, passes its own check."""

import hashlib
import json

import pytest

from xtuner_ext.data import CLOT_HUMAN_VALUE, load_clot_folder, load_conversations, make_clot_sample, validate_records
from xtuner_ext.data.records import image_key
from xtuner_ext.data.sample import JOKES


def tree_digest(root):
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def test_sample_layout_and_content(sample_dir):
    raw = json.loads((sample_dir / "ex_cn.json").read_text(encoding="utf-8"))
    assert len(raw) >= 40
    for record in raw:
        assert set(record) == {"image", "conversations"}  # exactly the tutorial's shape, no id
        assert record["image"].startswith("ex_images/") and (sample_dir / record["image"]).is_file()
        assert record["conversations"][0] == {"from": "human", "value": CLOT_HUMAN_VALUE}
        assert record["conversations"][1]["from"] == "gpt"
    assert len({r["conversations"][1]["value"] for r in raw}) == len(raw) == len(JOKES)


def test_sample_passes_its_own_check(sample_dir):
    loaded = load_clot_folder(sample_dir)
    report = validate_records(loaded.records, loaded.image_folder)
    assert report.ok, report.format()
    sizes = {info.image_size for info in report.infos}
    assert len(sizes) >= 6 and all(64 <= min(s) and max(s) <= 320 for s in sizes)
    assert len({w / h > 1.2 for w, h in sizes} | {w / h < 0.8 for w, h in sizes}) == 2  # wide and tall images


def test_sample_split_files(sample_dir):
    train = load_conversations(sample_dir / "train.json").records
    heldout = load_conversations(sample_dir / "heldout.json").records
    assert len(train) + len(heldout) == len(JOKES) and len(heldout) == 8
    assert {image_key(r) for r in train}.isdisjoint({image_key(r) for r in heldout})
    assert validate_records(heldout, str(sample_dir)).ok
    meta = json.loads((sample_dir / "split_meta.json").read_text(encoding="utf-8"))
    assert meta["image_folder"] == "." and meta["source"] == "ex_cn.json"


def test_sample_is_deterministic(tmp_path, sample_dir):
    again = make_clot_sample(tmp_path / "again", n_records=48, seed=0)
    assert tree_digest(again) == tree_digest(sample_dir)
    other = make_clot_sample(tmp_path / "other", n_records=48, seed=1)
    assert tree_digest(other) != tree_digest(sample_dir)


def test_sample_refuses_to_overwrite_unless_asked(tmp_path):
    out = make_clot_sample(tmp_path / "s", n_records=10, heldout_count=2)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        make_clot_sample(out, n_records=10, heldout_count=2)
    make_clot_sample(out, n_records=12, heldout_count=2, overwrite=True)
    assert len(json.loads((out / "ex_cn.json").read_text(encoding="utf-8"))) == 12
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # no temporary folders left behind
