"""RunStartHook reaches every mmengine runner through boot.py, once, and clears orphaned temp files."""
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch

import xtuner_ext  # noqa: F401  (boot patches: the runner adds RunStartHook)
from xtuner_ext.fileio import temp_name


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))


def runner_in(work_dir: Path, custom_hooks=None):
    from mmengine.runner import Runner
    return Runner(model=Tiny(), work_dir=str(work_dir), custom_hooks=custom_hooks, default_scope='mmengine',
                  experiment_name=f'run_start_{uuid.uuid4().hex}')  # runners made in one second share a name


@pytest.mark.parametrize('custom_hooks', [None, [dict(type='RunStartHook')]])
def test_every_runner_gets_the_hook_once(tmp_path, custom_hooks):
    hooks = [type(hook).__name__ for hook in runner_in(tmp_path, custom_hooks).hooks]
    assert hooks.count('RunStartHook') == 1


def test_before_run_removes_the_temp_file_of_a_killed_write(tmp_path):
    child = subprocess.Popen([sys.executable, '-c', 'pass'])
    child.wait()  # a PID that is gone, as after `kill -9` during a checkpoint write
    work_dir = tmp_path / 'work'
    work_dir.mkdir()
    orphan = Path(temp_name(str(work_dir / 'iter_20.pth'), child.pid))
    in_progress = Path(temp_name(str(work_dir / 'iter_30.pth'), os.getpid()))
    for path in (orphan, in_progress):
        path.write_bytes(b'part of a checkpoint')
    runner_in(work_dir).call_hook('before_run')
    assert not orphan.exists() and in_progress.exists()
