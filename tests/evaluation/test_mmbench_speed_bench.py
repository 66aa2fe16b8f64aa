"""``bench/mmbench_speed.py`` (the GPU rows/s measurement) end to end on the tiny preset, on the CPU:
it builds the model folder and the TSV, runs ``python -m xtuner_ext.cli mmbench`` and reports timing."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def bench(tmp_path, *extra):
    return subprocess.run([sys.executable, str(REPO / 'bench' / 'mmbench_speed.py'), '--preset', 'tiny', '--device',
                           'cpu', '--root', str(tmp_path), '--out', str(tmp_path / 'speed.json'), *extra],
                          capture_output=True, text=True, timeout=600)


def test_a_finished_run_reports_rows_per_second(tmp_path):
    done = bench(tmp_path, '--rows', '3', '--max-new-tokens', '1')
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / 'speed.json').read_text())
    assert summary['rows_answered'] == 3 and summary['finished'] and summary['child_exit_code'] == 0
    assert summary['steady_rows_per_s'] > 0 and summary['first_row_s'] > 0
    assert sum(summary['tiles_per_image'].values()) == 3 and summary['this_run']['answered'] == 3
    assert (tmp_path / 'model_tiny' / 'config.json').is_file()


def test_the_budget_stops_the_run_and_keeps_its_timing(tmp_path):
    done = bench(tmp_path, '--rows', '40', '--max-new-tokens', '1', '--budget-s', '1')
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / 'speed.json').read_text())
    assert not summary['finished'] and summary['rows_answered'] < 40 and 'budget of 1 s spent' in done.stdout
