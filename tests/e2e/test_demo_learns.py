"""`make demo` shows learning a person can see: after training, the answers to training images are
their reference jokes, no answer holds a replacement character, the loss falls at least 2x, and the
model prefers each held-out image's own joke more often than before (CPU, a few minutes)."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from xtuner_ext.evaluation.metrics import char_rouge_l

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp('demo')
    result = subprocess.run([sys.executable, str(REPO / 'tools' / 'demo.py'), '--work-dir', str(root / 'work'),
                             '--embedded', str(root / 'embedded')], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return root / 'work', result.stdout


def after_rows(work_dir: Path, split: str) -> list:
    rows = [json.loads(line) for line in (work_dir / 'before_after.jsonl').read_text(encoding='utf-8').splitlines()]
    return [r for r in rows if r['stage'] == 'after' and r['split'] == split]


def test_answers_to_training_images_are_their_jokes(demo):
    work_dir, _ = demo
    rows = after_rows(work_dir, 'train')
    assert len(rows) == 4
    assert all(char_rouge_l(r['answer'], r['reference']) >= 0.8 for r in rows), rows


def test_no_answer_after_training_holds_a_replacement_character(demo):
    work_dir, _ = demo
    assert not [r['answer'] for r in after_rows(work_dir, 'train') + after_rows(work_dir, 'heldout')
                if '\ufffd' in r['answer']]


def test_loss_falls_and_choice_accuracy_rises(demo):
    work_dir, stdout = demo
    metrics = json.loads((work_dir / 'before_after_metrics.json').read_text(encoding='utf-8'))
    before, after = metrics['before']['metrics']['heldout'], metrics['after']['metrics']['heldout']
    assert after['choice_accuracy'] > before['choice_accuracy']
    first, last = map(float, re.search(r'running mean\): ([0-9.]+) at start -> ([0-9.]+) after', stdout).groups())
    assert last * 2 <= first, (first, last)
    assert 'before_after.html' in stdout and 'choice_accuracy' in stdout
