"""The preflight check and the training dataset of each size's config work with that size's LLM family:
the 1B's with a tiny Qwen2 InternVL2 (``Hermes-2``), the 4B's with a tiny Phi-3 one (``phi3-chat``)."""
from pathlib import Path

import pytest
from mmengine.config import Config

REPO = Path(__file__).resolve().parents[2]
CASES = {  # config -> (LLM family of that size, the answer role its template opens)
    'internvl2_1b_qlora.py': ('qwen2', '<|im_start|>'),
    'internvl2_4b_qlora.py': ('phi3', '<|assistant|>'),
}


@pytest.fixture(scope='module')
def family_models(tmp_path_factory):
    from xtuner_ext.models.internvl2.tiny import make_tiny_model

    root = tmp_path_factory.mktemp('families')
    return {family: make_tiny_model(root / family, seed=0, llm=family, max_dynamic_patch=2)
            for family, _ in CASES.values()}


@pytest.mark.parametrize('config_file', sorted(CASES))
def test_preflight_and_dataset_with_the_sizes_llm(config_file, family_models, sample_dir, monkeypatch, capsys):
    from mmengine.registry import DATASETS

    from xtuner_ext.data.check import main

    family, role = CASES[config_file]
    monkeypatch.setenv('XTUNER_EXT_MODEL_PATH', str(family_models[family]))
    monkeypatch.setenv('XTUNER_EXT_DATA_ROOT', str(sample_dir))
    config = str(REPO / 'configs' / 'internvl' / config_file)
    assert main([config]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == 'checked 48 records: 48 usable, 0 with problems'

    dataset = DATASETS.build(Config.fromfile(config).train_dataloader.dataset)
    assert len(dataset) == 48 and dataset.skipped == 0
    tokenizer = dataset.processor.tokenizer
    ids = dataset[0]['input_ids']
    ids = ids.tolist() if hasattr(ids, 'tolist') else list(ids)
    assert tokenizer.convert_tokens_to_ids(role) in ids
    assert tokenizer.convert_tokens_to_ids(dataset.processor.stop_token) == ids[-1]  # the answer ends with it
