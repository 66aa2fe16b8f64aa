"""`xtuner train CONFIG --deepspeed deepspeed_zero2` on the CPU, one plain process (DeepSpeed's CPU
accelerator; its shared-memory op is compiled just in time on the first run, ~2 minutes, then cached):
a DeepSpeed checkpoint folder, an exact `--resume` from it (the checkpoint hooks run under DeepSpeed too,
so RandomStateHook's states come back), and `tools/convert_to_official.py` reading it.

Not covered here: 2 ranks under DeepSpeed on the CPU. ZeRO-2's step gathers the partitions with
`all_gather_into_tensor`, which gloo (torch 2.14, DeepSpeed 0.18.9) rejects ("Output 0 of Split is a view
and is being modified inplace"); plain DDP covers the several-rank path on the CPU (test_multi_rank.py).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / 'configs' / 'internvl' / 'internvl2_tiny_qlora.py'
XTUNER = Path(sys.executable).parent / 'xtuner'
ITERS = 4


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    from xtuner_ext.data.sample import make_clot_sample
    from xtuner_ext.models.internvl2.tiny import make_tiny_model

    root = tmp_path_factory.mktemp('deepspeed_cpu')
    make_tiny_model(root / 'internvl2_tiny', seed=0)
    make_clot_sample(root / 'CLoT_sample', seed=0)
    config = root / 'tiny_deepspeed.py'  # without the before/after chat hook (minutes on CPU)
    config.write_text(f"_base_ = [{str(CONFIG)!r}]\ncustom_hooks = [dict(type='RandomStateHook')]\n", encoding='utf-8')
    env = dict(os.environ, XTUNER_EXT_MODEL_PATH=str(root / 'internvl2_tiny'),
               XTUNER_EXT_DATA_ROOT=str(root / 'CLoT_sample'), OMP_NUM_THREADS='1')
    for name in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT', 'NPROC_PER_NODE', 'NNODES'):
        env.pop(name, None)  # one plain process, as a user starts it
    return env, config


def train(setup, work_dir: Path, *arguments: str) -> subprocess.CompletedProcess:
    env, config = setup
    command = [str(XTUNER), 'train', str(config), '--work-dir', str(work_dir), '--deepspeed', 'deepspeed_zero2',
               *arguments, '--cfg-options', f'train_cfg.iter_cap={ITERS}', 'default_hooks.checkpoint.interval=2',
               'default_hooks.checkpoint.max_keep_ckpts=3']  # LoRA dropout on: the resume must replay its masks
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope='module')
def uninterrupted(setup, tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('uninterrupted')
    train(setup, work_dir)
    return work_dir


def test_checkpoints_are_deepspeed_folders_and_the_pointer_names_the_last(uninterrupted):
    for step in (2, ITERS):
        assert (uninterrupted / f'iter_{step}.pth' / 'mp_rank_00_model_states.pt').is_file()
    assert (uninterrupted / 'last_checkpoint').read_text() == str(uninterrupted / f'iter_{ITERS}.pth')


def test_resume_from_a_deepspeed_folder_matches_the_uninterrupted_run(setup, uninterrupted, tmp_path):
    from xtuner_ext.convert.trained_state import read_trained_state

    result = train(setup, tmp_path, '--resume', str(uninterrupted / 'iter_2.pth'))
    assert 'resumed epoch: 0, iter: 2' in result.stdout + result.stderr
    resumed, reference = (read_trained_state(d / f'iter_{ITERS}.pth') for d in (tmp_path, uninterrupted))
    assert resumed.keys() == reference.keys() and resumed
    mismatched = [k for k in reference if not torch.equal(resumed[k], reference[k])]
    assert not mismatched, mismatched[:5]
    assert 'random_state' in torch.load(uninterrupted / 'iter_2.pth' / 'mp_rank_00_model_states.pt',
                                        map_location='cpu', weights_only=False)  # our own test file


def test_convert_to_official_reads_a_deepspeed_folder(setup, uninterrupted, tmp_path):
    env, _ = setup
    out = tmp_path / 'official'
    result = subprocess.run([sys.executable, str(REPO / 'tools' / 'convert_to_official.py'), str(CONFIG),
                             str(uninterrupted / f'iter_{ITERS}.pth'), str(out)], env=env, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (out / 'model.safetensors').is_file() and (out / 'config.json').is_file()
    check = json.loads((out / 'conversion_check.json').read_text(encoding='utf-8'))
    assert check['checkpoint'] == str(uninterrupted / f'iter_{ITERS}.pth') and check['written']['keys'] > 0
    assert check['reload']['agreement'] == 1.0  # the written folder answers as the merged trained model
