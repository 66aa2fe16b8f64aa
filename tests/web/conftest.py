"""Fixtures for the web page tests: two tiny InternVL2 folders that answer differently (seeds 0
and 1, standing in for base and fine-tuned) and the CLoT-style sample with its held-out split."""
from pathlib import Path

import pytest


def _tiny(tmp_path_factory, seed: int) -> Path:
    from xtuner_ext.models.internvl2.tiny import make_tiny_model

    # max_dynamic_patch=2: at most 3 tiles per picture, so CPU answers stay quick
    return make_tiny_model(tmp_path_factory.mktemp(f'web_model_{seed}') / 'internvl2_tiny', seed=seed,
                           max_dynamic_patch=2)


@pytest.fixture(scope='session')
def base_dir(tmp_path_factory) -> Path:
    return _tiny(tmp_path_factory, 0)


@pytest.fixture(scope='session')
def finetuned_dir(tmp_path_factory) -> Path:
    return _tiny(tmp_path_factory, 1)


@pytest.fixture(scope='session')
def web_sample_dir(tmp_path_factory) -> Path:
    from xtuner_ext.data.sample import make_clot_sample

    return make_clot_sample(tmp_path_factory.mktemp('web_data') / 'CLoT_sample')


@pytest.fixture(scope='session')
def heldout_record(web_sample_dir) -> dict:
    import json

    return json.loads((web_sample_dir / 'heldout.json').read_text(encoding='utf-8'))[0]
