"""Tiny LLaVA inputs: an official-layout InternLM2, a CLIP built from a transformers config, the
tutorial-format sample data; and the tiny fine-tune config pointed at them."""
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
FINETUNE = REPO / 'configs' / 'llava' / 'llava_internlm2_tiny_clip_tiny_qlora_lora_finetune.py'


@pytest.fixture(scope='session')
def llava_inputs(tmp_path_factory):
    from xtuner_ext.data.llava_sample import make_llava_sample
    from xtuner_ext.data.repeat import repeat_file
    from xtuner_ext.models.internlm2 import make_tiny_internlm2
    from xtuner_ext.models.llava import make_tiny_clip

    root = tmp_path_factory.mktemp('llava')
    data = make_llava_sample(root / 'llava_data')
    repeat_file(str(data / 'unique_data.json'), str(data / 'repeated_data.json'), 20)
    return dict(XTUNER_EXT_MODEL_PATH=str(make_tiny_internlm2(root / 'internlm2_tiny')),
                XTUNER_EXT_CLIP_PATH=str(make_tiny_clip(root / 'clip_tiny')), XTUNER_EXT_DATA_ROOT=str(data))


@pytest.fixture
def llava_env(llava_inputs, monkeypatch):
    for key, value in llava_inputs.items():
        monkeypatch.setenv(key, value)
    return llava_inputs


@pytest.fixture
def image(llava_inputs):
    return os.path.join(llava_inputs['XTUNER_EXT_DATA_ROOT'], 'test_img', 'oph.png')
