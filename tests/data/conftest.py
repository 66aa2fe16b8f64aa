"""Fixtures for the data tests: the generated sample set and the tiny model folder."""

from pathlib import Path

import pytest

from data_helpers import TINY_MODEL
from xtuner_ext.data.sample import make_clot_sample


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory) -> Path:
    """The embedded sample set, generated once per test session (seed 0, 48 records)."""
    return make_clot_sample(tmp_path_factory.mktemp("sample") / "CLoT_sample")


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    return TINY_MODEL
