"""Shared test setup: stock `xtuner` starts tools with the first `python` on PATH,
so the venv running the tests must come first there."""
import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = REPO_ROOT / 'tests' / 'fixtures'

os.environ['PATH'] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get('PATH', '')


@pytest.fixture(scope='session')
def repo_root() -> Path:
    return REPO_ROOT
