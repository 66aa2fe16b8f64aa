"""Stock `xtuner train` on the tiny InternVL2 QLoRA config, as a user runs it (CPU, minutes): the
artefacts (checkpoints, the log, the weights), and the exit code and last line of the runs that fail.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / 'configs' / 'internvl' / 'internvl2_tiny_qlora.py'
XTUNER = Path(sys.executable).parent / 'xtuner'
LOSS = re.compile(r'Iter\(train\) \[\s*(\d+)/\d+\].*?\bloss: ([0-9.]+)')
ITERS = 40


@pytest.fixture(scope='module')
def embedded(tmp_path_factory):
    """The embedded default, plus 4 training records to repeat (the 'repeated data' of the issue)."""
    from xtuner_ext.data.sample import make_clot_sample
    from xtuner_ext.models.internvl2.tiny import make_tiny_model

    root = tmp_path_factory.mktemp('embedded')
    make_tiny_model(root / 'internvl2_tiny', seed=0)
    data_dir = make_clot_sample(root / 'CLoT_sample', seed=0)
    records = json.loads((data_dir / 'train.json').read_text(encoding='utf-8'))[:4]
    (data_dir / 'repeat4.json').write_text(json.dumps(records, ensure_ascii=False), encoding='utf-8')
    env = dict(os.environ, XTUNER_EXT_MODEL_PATH=str(root / 'internvl2_tiny'), XTUNER_EXT_DATA_ROOT=str(data_dir))
    return env, data_dir / 'repeat4.json'


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, '-c', 'pass'])
    child.wait()
    return child.pid


def train_command(work_dir: Path, data_path: Path, *extra: str) -> list:
    # 4 records x 10 repeats / batch 4 = 10 iterations per epoch (an epoch boundary costs mmengine
    # a 2 s sleep); log every iteration without smoothing; a checkpoint every 10 iterations.
    return [str(XTUNER), 'train', str(CONFIG), '--work-dir', str(work_dir), *extra, '--cfg-options',
            f'train_dataloader.dataset.data_path={data_path}', 'train_dataloader.dataset.repeat_times=10',
            f'train_cfg.max_epochs={ITERS // 10}',
            'log_processor.window_size=1', 'default_hooks.checkpoint.interval=10',
            'default_hooks.checkpoint.max_keep_ckpts=4']


def run_training(env, work_dir: Path, data_path: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(train_command(work_dir, data_path, *extra), env=env, capture_output=True, text=True)


def losses(work_dir: Path) -> dict:
    found = {}
    for log in sorted(work_dir.glob('*/*.log')):
        found.update({int(i): float(v) for i, v in LOSS.findall(log.read_text(encoding='utf-8'))})
    return found


def trained_state(checkpoint: Path) -> dict:
    import xtuner_ext  # noqa: F401  (weights_only-safe loading of mmengine checkpoints)
    from mmengine.runner.checkpoint import _load_checkpoint
    return _load_checkpoint(str(checkpoint), map_location='cpu')['state_dict']


@pytest.fixture(scope='module')
def uninterrupted(embedded, tmp_path_factory):
    env, data_path = embedded
    work_dir = tmp_path_factory.mktemp('uninterrupted')
    result = run_training(env, work_dir, data_path)
    assert (work_dir / f'iter_{ITERS}.pth').is_file(), result.stdout[-3000:] + result.stderr[-3000:]
    return work_dir


def test_loss_falls_on_repeated_data(uninterrupted):
    history = losses(uninterrupted)
    assert sorted(history) == list(range(1, ITERS + 1))
    first = [history[i] for i in range(1, 11)]
    last = [history[i] for i in range(ITERS - 9, ITERS + 1)]
    assert all(map(torch.isfinite, torch.tensor(first + last)))
    assert sum(last) / 10 < 0.5 * sum(first) / 10, history


def test_checkpoint_holds_only_lora_and_projector(uninterrupted):
    state = trained_state(uninterrupted / f'iter_{ITERS}.pth')
    lora = [k for k in state if '.lora_A.' in k or '.lora_B.' in k]
    projector = [k for k in state if k.startswith('model.mlp1.')]
    assert lora and projector and len(lora) + len(projector) == len(state)
    assert all(v.dtype == torch.float32 for v in state.values())
    assert not any('lm_head' in k or 'embed_tokens' in k or 'vision_model' in k for k in state)


def test_trained_model_is_4bit_and_loads_the_checkpoint_strictly(uninterrupted, embedded):
    import bitsandbytes as bnb
    from mmengine.config import Config
    from mmengine.registry import MODELS

    env, _ = embedded
    os.environ.update({k: env[k] for k in ('XTUNER_EXT_MODEL_PATH', 'XTUNER_EXT_DATA_ROOT')})
    cfg = Config.fromfile(str(CONFIG))
    cfg.model.pretrained_pth = str(uninterrupted / f'iter_{ITERS}.pth')
    model = MODELS.build(cfg.model)
    llm = model.model.language_model.get_base_model()
    linears = {n: type(m) for n, m in llm.named_modules()
               if isinstance(m, torch.nn.Linear) and '.lora_' not in n}  # LoRA's own A/B layers are fp32
    quantized = [n for n, t in linears.items() if issubclass(t, bnb.nn.Linear4bit)]
    assert quantized and set(linears) - set(quantized) == {'lm_head'}
    assert all(getattr(llm.get_submodule(n).weight, 'quant_state').quant_type == 'nf4' for n in quantized)
    expected = trained_state(uninterrupted / f'iter_{ITERS}.pth')
    loaded = model.state_dict()
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)


def test_kill_then_resume_matches_the_uninterrupted_run(uninterrupted, embedded, tmp_path):
    env, data_path = embedded
    work_dir = tmp_path / 'killed'
    log = open(tmp_path / 'killed.log', 'w')
    process = subprocess.Popen(train_command(work_dir, data_path), env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    deadline = time.time() + 600
    while not (work_dir / 'iter_20.pth').exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, (tmp_path / 'killed.log').read_text()[-3000:]
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    saved = sorted(work_dir.glob('iter_*.pth'), key=lambda p: int(p.stem.split('_')[1]))
    assert saved and int(saved[-1].stem.split('_')[1]) < ITERS, 'the run finished before it was killed'
    for checkpoint in saved:  # whatever is there under a checkpoint's name is complete
        trained_state(checkpoint)

    result = run_training(env, work_dir, data_path, '--resume', str(saved[-1]))
    final = work_dir / f'iter_{ITERS}.pth'
    assert final.is_file(), result.stdout[-3000:] + result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert 'do not match' not in output and 'missing keys' not in output  # frozen weights are not "missing"
    assert re.search(r'InternVL2QLoRA: restored [\d,]+ trainable parameters .* strictly', output), output[-3000:]
    resumed, reference = trained_state(final), trained_state(uninterrupted / f'iter_{ITERS}.pth')
    assert resumed.keys() == reference.keys()
    mismatched = [k for k in reference if not torch.equal(resumed[k], reference[k])]
    assert not mismatched, mismatched[:5]


def test_train_by_registered_name(embedded, tmp_path):
    env, data_path = embedded
    work_dir = tmp_path / 'by_name'
    result = subprocess.run(
        [str(XTUNER), 'train', 'xtuner_ext_internvl2_tiny_qlora', '--work-dir', str(work_dir), '--cfg-options',
         f'train_dataloader.dataset.data_path={data_path}', 'train_dataloader.dataset.repeat_times=2',
         'train_cfg.max_epochs=3', 'default_hooks.checkpoint.interval=6'], env=env, capture_output=True, text=True)
    assert (work_dir / 'iter_6.pth').is_file(), result.stdout[-3000:] + result.stderr[-3000:]


def test_iter_cap_makes_a_short_run_in_one_option(embedded, tmp_path):
    """`--cfg-options train_cfg.iter_cap=3`: three iterations, a final checkpoint, no scheduler error."""
    env, _ = embedded
    result = subprocess.run([str(XTUNER), 'train', str(CONFIG), '--work-dir', str(tmp_path), '--cfg-options',
                             'train_cfg.iter_cap=3'], env=env, capture_output=True, text=True)
    assert (tmp_path / 'iter_3.pth').is_file(), result.stdout[-3000:] + result.stderr[-3000:]
    assert sorted(losses(tmp_path)) == [1, 2, 3]
def test_resume_with_nothing_left_to_train_says_so_and_fails(uninterrupted, embedded, tmp_path):
    env, data_path = embedded
    work_dir = tmp_path / 'past_the_end'
    work_dir.mkdir()
    orphan = work_dir / f'.iter_10.pth.tmp-{dead_pid()}'  # left by a checkpoint write killed with -9
    orphan.write_bytes(b'half a checkpoint')
    command = train_command(work_dir, data_path, '--resume', str(uninterrupted / f'iter_{ITERS}.pth'))
    command[command.index(f'train_cfg.max_epochs={ITERS // 10}')] = 'train_cfg.max_epochs=1'  # 10 iterations
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    assert result.returncode == 1, result.stderr[-3000:]
    last_line = result.stderr.strip().splitlines()[-1]
    assert re.search(rf'NothingToTrainError: nothing left to train: the checkpoint .*iter_{ITERS}.pth is at iteration '
                     rf'{ITERS}, and this config trains 10 iterations\. .*train_cfg.max_epochs=N with N above 1',
                     last_line), last_line
    assert not orphan.exists() and 'removed 1 temporary file(s)' in result.stdout + result.stderr
    assert not list(work_dir.glob('iter_*.pth'))


@pytest.mark.parametrize('damage', ['empty', 'truncated'])
def test_resume_from_a_corrupt_checkpoint_names_it(uninterrupted, embedded, tmp_path, damage):
    env, data_path = embedded
    work_dir = tmp_path / 'corrupt'
    work_dir.mkdir()
    (work_dir / 'iter_10.pth').write_bytes((uninterrupted / 'iter_10.pth').read_bytes())
    data = (uninterrupted / 'iter_20.pth').read_bytes()
    broken = work_dir / 'iter_20.pth'
    broken.write_bytes(b'' if damage == 'empty' else data[:len(data) // 2])
    result = run_training(env, work_dir, data_path, '--resume', str(broken))
    assert result.returncode == 1, result.stderr[-3000:]
    last_line = result.stderr.strip().splitlines()[-1]
    assert re.search(rf'CorruptCheckpointError: {re.escape(str(broken))} is truncated or corrupt \(\d+ bytes; .*\): '
                     r'it is not a complete checkpoint .*load an earlier one from the same folder \(iter_10.pth\)',
                     last_line), last_line


def test_missing_embedded_default_outside_the_repository_says_what_to_do(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ('XTUNER_EXT_MODEL_PATH', 'XTUNER_EXT_DATA_ROOT')}
    result = subprocess.run([str(XTUNER), 'train', 'xtuner_ext_internvl2_tiny_qlora'], cwd=tmp_path, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 1, result.stderr[-3000:]
    last_line = result.stderr.strip().splitlines()[-1]
    assert 'embedded/internvl2_tiny is not a directory' in last_line and 'run `make demo` once' in last_line
    assert 'XTUNER_EXT_MODEL_PATH' in last_line, last_line


def test_truncated_weights_file_is_named(embedded, tmp_path):
    env, data_path = embedded
    model_dir = Path(shutil.copytree(env['XTUNER_EXT_MODEL_PATH'], tmp_path / 'model'))
    weights = model_dir / 'model.safetensors'
    weights.write_bytes(weights.read_bytes()[:len(weights.read_bytes()) // 2])  # a copy that stopped half-way
    result = run_training(dict(env, XTUNER_EXT_MODEL_PATH=str(model_dir)), tmp_path / 'work', data_path)
    assert result.returncode == 1, result.stderr[-3000:]
    last_line = result.stderr.strip().splitlines()[-1]
    assert f'{weights} is truncated or corrupt' in last_line and 'download or copy the checkpoint folder again' \
        in last_line, last_line
