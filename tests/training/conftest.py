"""Fixtures for the training-piece tests: a tiny InternVL2 folder and the CLoT-style sample set,
both written by the project's own generators into session temp dirs."""
from pathlib import Path

import pytest

from training_helpers import NF4, lora


@pytest.fixture(scope='session')
def tiny_model_dir(tmp_path_factory) -> Path:
    """Tiny InternVL2 with max_dynamic_patch=2: every image is 1 tile or 2 tiles + thumbnail."""
    from xtuner_ext.models.internvl2.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp('model') / 'internvl2_tiny', seed=0, max_dynamic_patch=2)


@pytest.fixture(scope='session')
def sample_dir(tmp_path_factory) -> Path:
    from xtuner_ext.data.sample import make_clot_sample

    return make_clot_sample(tmp_path_factory.mktemp('data') / 'CLoT_sample')


@pytest.fixture(scope='session')
def tokenizer(tiny_model_dir):
    from xtuner_ext.models.internvl2 import load_tokenizer

    return load_tokenizer(tiny_model_dir)


@pytest.fixture(scope='session')
def model_config(tiny_model_dir):
    from xtuner_ext.models.internvl2 import InternVLChatConfig

    return InternVLChatConfig.from_pretrained(tiny_model_dir)


@pytest.fixture(scope='session')
def train_dataset(tiny_model_dir, sample_dir):
    from xtuner_ext.data.internvl2_dataset import InternVL2ConversationDataset

    return InternVL2ConversationDataset(str(tiny_model_dir), str(sample_dir / 'train.json'), max_length=1024,
                                        image_folder=str(sample_dir))


@pytest.fixture
def make_qlora(tiny_model_dir):
    """Build a fresh InternVL2QLoRA on the tiny model (nf4 LLM + LoRA unless told otherwise)."""
    from xtuner_ext.models.internvl2_qlora import InternVL2QLoRA

    def build(**kwargs):
        kwargs.setdefault('quantization_llm', dict(NF4))
        kwargs.setdefault('llm_lora', lora())
        kwargs.setdefault('gradient_checkpointing', False)
        return InternVL2QLoRA(str(tiny_model_dir), **kwargs)

    return build


def pytest_configure(config):
    # bitsandbytes' CPU kernels warn (FutureWarning, torch._check_is_size) on every 4-bit matmul.
    config.addinivalue_line('filterwarnings', 'ignore:_check_is_size will be removed:FutureWarning')
