"""`make demo` as a newcomer sees it: a short guided run, the result, the next commands; the full log
in a file. Runs the real tools/demo.py (stock `xtuner train` on the CPU, minutes)."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def run_demo(tmp_path: Path, embedded: Path) -> subprocess.CompletedProcess:
    """The demo's output as bytes decoded by hand: text mode would turn the bars' carriage returns into lines."""
    result = subprocess.run([sys.executable, str(REPO / 'tools' / 'demo.py'), '--work-dir', str(tmp_path / 'demo'),
                             '--embedded', str(embedded)], cwd=tmp_path, capture_output=True)
    result.stdout, result.stderr = result.stdout.decode('utf-8'), result.stderr.decode('utf-8')
    return result


def screen_lines(result: subprocess.CompletedProcess) -> list:
    """What a terminal keeps: each line as its last carriage-return redraw left it."""
    return [line.split('\r')[-1] for line in (result.stdout + result.stderr).split('\n')]


def test_demo_is_a_short_guided_run_with_result_and_next_steps(tmp_path):
    result = run_demo(tmp_path, tmp_path / 'embedded')
    lines = screen_lines(result)
    text = '\n'.join(lines)
    assert result.returncode == 0, text[-3000:]
    assert len(lines) < 60, text
    steps = [line for line in lines if re.match(r'\[\d/4\] ', line)]
    assert [s[:5] for s in steps] == ['[1/4]', '[2/4]', '[3/4]', '[4/4]'], text
    assert re.search(r'training: 100%\|.*\| 100/100 \[.*loss=', text), text  # the bar with ETA and loss
    rows = [line for line in lines if line.startswith(('| train |', '| heldout |'))]
    assert len(rows) == 4 and 'Result (saved as demo/answers.md)' in text
    assert re.search(r'Loss \(mean of 10 iterations\): [\d.]+ at the start -> [\d.]+ after 100 iterations\.', text)
    assert 'Next, from the repository root:' in text and 'python tools/check_data.py configs/' in text
    assert 'xtuner train configs/internvl/internvl2_tiny_qlora.py' in text
    for noise in ('Config:', 'FutureWarning', 'Hooks will be executed', 'System environment', 'Iter(train)'):
        assert noise not in text, noise
    log = tmp_path / 'demo' / 'demo.log'
    assert 'The full log: demo/demo.log' in text and log.is_file()
    assert 'Iter(train) [100/100]' in log.read_text(encoding='utf-8')  # the child's output went to the log


def test_demo_failure_is_one_line_and_the_log(tmp_path):
    from xtuner_ext.models.internvl2.tiny import make_tiny_model

    embedded = tmp_path / 'embedded'
    make_tiny_model(embedded / 'internvl2_tiny', seed=0)
    weights = embedded / 'internvl2_tiny' / 'model.safetensors'
    weights.write_bytes(weights.read_bytes()[:1000])  # a download that stopped early
    result = run_demo(tmp_path, embedded)
    assert result.returncode == 1
    error = [line for line in result.stderr.splitlines() if line.strip()]
    assert error[0].startswith(f'error: ValueError: {weights} is truncated or corrupt'), result.stderr
    assert error[1] == 'The traceback and everything before it: demo/demo.log'
    assert 'Traceback' not in result.stdout + result.stderr
    assert 'Traceback' in (tmp_path / 'demo' / 'demo.log').read_text(encoding='utf-8')
