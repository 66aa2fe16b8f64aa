"""Official-layout InternLM2 folders: the LLM part of the reference InternVL2 fixture, and a seeded tiny one."""
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[2] / 'fixtures'


@pytest.fixture(scope='session')
def reference_internlm2_dir(tmp_path_factory) -> Path:
    """The InternLM2 inside tests/fixtures/internvl2_tiny (whose outputs match the official code)."""
    from xtuner_ext.models.internlm2.tiny import internlm2_folder_from_internvl2

    return internlm2_folder_from_internvl2(FIXTURES / 'internvl2_tiny', tmp_path_factory.mktemp('ref') / 'internlm2')


@pytest.fixture(scope='session')
def tiny_internlm2_dir(tmp_path_factory) -> Path:
    from xtuner_ext.models.internlm2 import make_tiny_internlm2

    return make_tiny_internlm2(tmp_path_factory.mktemp('tiny') / 'internlm2_tiny', seed=0)
