"""bench/side_by_side.py on the CPU with the tiny preset: the lead's GPU command runs the same code,
so a broken setting or child process shows up here first (no timings are checked, only that every
selected setting produced a row with a step time and the varlen probe row says why it was skipped)."""
import json
import os
import sys
from pathlib import Path

import pytest

from e2e_helpers import run

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_side_by_side_runs_the_selected_settings_in_a_child_process(tmp_path):
    out = tmp_path / 'bench.json'
    env = dict(os.environ, PYTHONPATH=str(REPO))
    run([sys.executable, REPO / 'bench' / 'side_by_side.py', '--preset', 'tiny', '--warmup', '0', '--steps', '1',
         '--root', tmp_path, '--shapes', 'clot', '4x6656', '--settings', 'lever: packed rows, split', 'shipped:',
         '24 GB recipe, 2 x 2', '--out', out], env, REPO)
    rows = json.loads(out.read_text(encoding='utf-8'))['rows']
    probe, *timed = rows
    assert probe['error'].startswith('not tried'), probe
    assert [(r['setting'], r['shape'], r['micro_batches']) for r in timed] == [
        ('lever: packed rows, split attention', 'clot', 1),
        ('shipped: + fused loss on the head padded to 128 rows', 'clot', 1),
        ('24 GB recipe, 2 x 2 samples, recompute 12 of 24', '4x6656', 2)], rows  # 4 samples as 2 accumulated
    assert all(r['step_s'] > 0 and r['samples_per_s'] > 0 for r in timed), timed
    assert (tmp_path / 'bench.json.ours.json').is_file()  # ours ran as its own process (--impl both)
