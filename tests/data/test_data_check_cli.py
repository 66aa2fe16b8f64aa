"""``tools/check_data.py``: exit codes, the summary line, problems as file:index, config mode."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from data_helpers import clot_record, write_image, write_json
from xtuner_ext.data.check import main

REPO = Path(__file__).resolve().parents[2]


def run_tool(*args):
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, str(REPO / "tools" / "check_data.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=120)


def broken_data(root):
    write_image(root / "ex_images" / "ok.jpg")
    (root / "ex_images" / "bad.jpg").write_bytes(b"GIF89a broken")
    return write_json(root / "ex_cn.json", [clot_record("ex_images/ok.jpg"), clot_record("ex_images/bad.jpg", "坏图"),
                                            clot_record("../../etc/passwd", "越界"), clot_record("ex_images/ok.jpg")])


def test_sample_is_clean(sample_dir, capsys):
    # In-process (the subprocess path is exercised below; each `import xtuner_ext` costs seconds).
    assert main(["--data", str(sample_dir / "ex_cn.json"), "--image-folder", str(sample_dir)]) == 0
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1] == "checked 48 records: 48 usable, 0 with problems"
    assert "task types: I2T 48" in out


def test_cli_broken_data_reports_every_record(tmp_path):
    path = broken_data(tmp_path)
    result = run_tool("--data", path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stdout.splitlines()
    assert f"{path}:1: unreadable_image: not an image file PIL can read: {tmp_path}/ex_images/bad.jpg" in lines
    assert any(line.startswith(f"{path}:2: path_escapes_folder: image path '../../etc/passwd'") for line in lines)
    assert any(line.startswith(f"{path}:3: duplicate: same image and conversation as record 0") for line in lines)
    assert lines[-1] == "checked 4 records: 1 usable, 3 with problems"


def test_config_mode_with_model_budget(tmp_path, sample_dir, tiny_model, capsys):
    pytest.importorskip("xtuner_ext.models.internvl2.conversation")
    config = tmp_path / "cfg.py"
    config.write_text(
        "from xtuner_ext.data import clot_map_fn  # makes this a lazy-import config, like xtuner's\n"
        f"path = {str(tiny_model)!r}\n"
        f"data_root = {str(sample_dir)!r} + '/'\n"
        "data_path = data_root + 'ex_cn.json'\n"
        "image_folder = data_root\n"
        "max_length = 2100\n"
        "model = dict(type=clot_map_fn)\n", encoding="utf-8")
    assert main([str(config)]) == 0
    out = capsys.readouterr().out
    assert "tiles per image:" in out and "(max_length 2100)" in out
    assert out.splitlines()[-1] == "checked 48 records: 48 usable, 0 with problems"
    assert main([str(config), "--max-length", "700"]) == 1  # flags override the config
    assert ": would_truncate: " in capsys.readouterr().out


def test_usage_errors_exit_2(tmp_path, capsys):
    assert main([]) == 2
    assert "give a CONFIG or --data FILE" in capsys.readouterr().err
    assert main([str(tmp_path / "nope.py")]) == 2
    assert "config file not found" in capsys.readouterr().err
    assert main(["--data", str(tmp_path / "x.json")]) == 2
    assert "data not found" in capsys.readouterr().err
    assert main(["--bogus-flag"]) == 2
    capsys.readouterr()


def test_config_without_data_path(tmp_path, capsys):
    config = tmp_path / "cfg.py"
    config.write_text("max_length = 10\n", encoding="utf-8")
    assert main([str(config)]) == 2
    assert f"config {config} has no `data_path`" in capsys.readouterr().err


def test_json_copied_one_folder_up_is_explained(tmp_path, capsys):
    write_json(tmp_path / "datasets" / "ex_cn.json", [])
    data = tmp_path / "datasets" / "CLoT_cn_2000" / "ex_cn.json"
    assert main(["--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert "one folder up" in err and f"set data_root = '{tmp_path / 'datasets'}/'" in err


def test_bad_model_folder_is_a_usage_error(tmp_path, sample_dir, capsys):
    assert main(["--data", str(sample_dir), "--model", str(tmp_path)]) == 2
    assert "has no config.json" in capsys.readouterr().err


def test_max_length_without_model_says_budget_not_checked(sample_dir, capsys):
    assert main(["--data", str(sample_dir), "--max-length", "10", "--no-per-sample"]) == 0
    out = capsys.readouterr().out
    assert "tiles and token budget not checked" in out and " index " not in out


def test_unparsable_lines_count_as_problems(tmp_path, capsys):
    write_image(tmp_path / "a.jpg")
    path = tmp_path / "d.jsonl"
    path.write_text('{"image": "a.jpg", "conversations": [{"from": "human", "value": "<image>\\nq"}, '
                    '{"from": "gpt", "value": "a"}]}\nnot json\n', encoding="utf-8")
    assert main(["--data", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"{path}:1: invalid_json: line 2 is not valid JSON" in out
    assert out.splitlines()[-1] == "checked 2 records: 1 usable, 1 with problems"


def test_no_records_is_not_success(tmp_path, capsys):
    write_json(tmp_path / "ex_cn.json", [])
    assert main(["--data", str(tmp_path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert f"error: {tmp_path / 'ex_cn.json'} has no records; training needs at least one" in out
    assert out[-1] == "checked 0 records: 0 usable, 0 with problems"
