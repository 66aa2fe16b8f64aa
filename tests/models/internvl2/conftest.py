"""Shared fixtures: the official-reference checkpoint and seeded tiny checkpoints."""
import json
from pathlib import Path

import pytest
import torch

from xtuner_ext.models.internvl2 import InternVLChatModel

REPO_ROOT = Path(__file__).resolve().parents[3]
FIXTURES = REPO_ROOT / 'tests' / 'fixtures'
FIXTURE_DIR = FIXTURES / 'internvl2_tiny'


@pytest.fixture(scope='session')
def fixture_dir() -> Path:
    """Tiny random InternVL2 in the official layout + outputs of the official code (see its README)."""
    return FIXTURE_DIR


@pytest.fixture(scope='session')
def reference(fixture_dir):
    from safetensors.torch import load_file

    return json.loads((fixture_dir / 'reference.json').read_text(encoding='utf-8')), \
        load_file(str(fixture_dir / 'reference.safetensors'))


@pytest.fixture(scope='session')
def fp32_model(fixture_dir) -> InternVLChatModel:
    return InternVLChatModel.from_pretrained(fixture_dir, torch_dtype=torch.float32)


@pytest.fixture(scope='session')
def tiny_dir(tmp_path_factory) -> Path:
    """The default embedded tiny model, built once per session."""
    from xtuner_ext.models.internvl2.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp('tiny') / 'internvl2_tiny', seed=0)
