"""Stock `xtuner train` on a tiny InternVL2 of each other LLM family: Qwen2 (InternVL2-1B) and Phi-3 (InternVL2-4B).

The tiny QLoRA config runs with the LoRA targets of that size's shipped config, on a CPU, for two iterations;
the checkpoint must hold LoRA weights on exactly those projections (4-bit base layers underneath) and the
projector, and the logged losses must be finite.
"""
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mmengine.config import Config

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
TINY_CONFIG = REPO / 'configs' / 'internvl' / 'internvl2_tiny_qlora.py'
XTUNER = Path(sys.executable).parent / 'xtuner'
LOSS = re.compile(r'Iter\(train\) \[\s*(\d+)/\d+\].*?\bloss: ([0-9.naif]+)')
FAMILIES = {'qwen2': 'internvl2_1b_lora.py', 'phi3': 'internvl2_4b_lora.py'}  # LLM family -> its size's config


@pytest.fixture(scope='module')
def sample_data(tmp_path_factory):
    from xtuner_ext.data.sample import make_clot_sample

    return make_clot_sample(tmp_path_factory.mktemp('data') / 'CLoT_sample', seed=0)


def lora_targets(config_file: str, monkeypatch) -> list:
    monkeypatch.setenv('XTUNER_EXT_MODEL_PATH', '/nonexistent/model')
    monkeypatch.setenv('XTUNER_EXT_DATA_ROOT', '/nonexistent/data')
    return list(Config.fromfile(str(REPO / 'configs' / 'internvl' / config_file)).model.llm_lora.target_modules)


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_tiny_family_trains_two_steps_with_its_configs_lora_targets(family, sample_data, tmp_path, monkeypatch):
    import torch
    import xtuner_ext  # noqa: F401  (weights_only-safe loading of mmengine checkpoints)
    from mmengine.runner.checkpoint import _load_checkpoint

    from xtuner_ext.models.internvl2.tiny import make_tiny_model

    targets = lora_targets(FAMILIES[family], monkeypatch)
    model_dir = make_tiny_model(tmp_path / f'internvl2_tiny_{family}', seed=0, llm=family)
    env = dict(os.environ, XTUNER_EXT_MODEL_PATH=str(model_dir), XTUNER_EXT_DATA_ROOT=str(sample_data))
    work_dir = tmp_path / 'work'
    command = [str(XTUNER), 'train', str(TINY_CONFIG), '--work-dir', str(work_dir), '--cfg-options',
               'train_cfg.iter_cap=2', 'default_hooks.logger.interval=1', 'log_processor.window_size=1',
               f'model.llm_lora.target_modules=[{",".join(targets)}]']
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    assert (work_dir / 'iter_2.pth').is_file(), result.stdout[-3000:] + result.stderr[-3000:]

    logged = {int(i): float(v) for log in work_dir.glob('*/*.log')
              for i, v in LOSS.findall(log.read_text(encoding='utf-8'))}
    assert sorted(logged) == [1, 2] and all(math.isfinite(v) and v > 0 for v in logged.values())
    state = _load_checkpoint(str(work_dir / 'iter_2.pth'), map_location='cpu')['state_dict']
    adapted = {key.split('.lora_A')[0].rsplit('.', 1)[-1] for key in state if '.lora_A.' in key}
    assert adapted == set(targets)
    assert all('lora_' in key or key.startswith('model.mlp1.') for key in state)
    assert not any('lm_head' in key or 'embed_tokens' in key for key in state)
    assert all(v.dtype == torch.float32 for v in state.values())
