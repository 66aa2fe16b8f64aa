"""Fixtures for the MMBench tests: TSVs written by the project's own generator, and the official
tiny InternVL2 checkpoint from tests/fixtures (see its README)."""
from pathlib import Path

import pytest

from xtuner_ext.evaluation.mmbench.sample import make_mmbench_sample

TINY_MODEL = Path(__file__).resolve().parents[1] / 'fixtures' / 'internvl2_tiny'


@pytest.fixture(scope='session')
def dev_tsv(tmp_path_factory) -> Path:
    """12 questions (shape, colour, counting), answers, no circular copies."""
    return make_mmbench_sample(tmp_path_factory.mktemp('mmbench') / 'MMBench_DEV_EN_sample.tsv')


@pytest.fixture(scope='session')
def circular_tsv(tmp_path_factory) -> Path:
    """The same questions plus their rotated copies, image cells referring to the main rows."""
    return make_mmbench_sample(tmp_path_factory.mktemp('mmbench') / 'MMBench_DEV_EN_circular.tsv',
                               circular_copies=True)


@pytest.fixture(scope='session')
def test_split_tsv(tmp_path_factory) -> Path:
    return make_mmbench_sample(tmp_path_factory.mktemp('mmbench') / 'MMBench_TEST_CN_sample.tsv', split='test',
                               language='cn')


@pytest.fixture(scope='session')
def tiny_model() -> Path:
    return TINY_MODEL
