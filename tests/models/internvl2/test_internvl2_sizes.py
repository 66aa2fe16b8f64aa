"""Every shipped size config at full size, on the meta device: the architecture has the released parameter
count, the config's LoRA targets exist in that LLM, and neither LoRA nor 4-bit quantisation touches the
output head or the embeddings.

Released counts compared with (model cards of OpenGVLab/InternVL2-1B/2B/4B/8B/26B, "Model Size"): 938M, 2.21B,
4.15B, 8.08B, 25.51B. The preset must round to the card's figure (half a unit in its last digit).
"""
import json
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from xtuner_ext.models.internvl2 import InternVLChatConfig, InternVLChatModel
from xtuner_ext.models.internvl2.tiny import official_config_dict
from xtuner_ext.models.quantization import QuantizationSettings, _linear_names

REPO = Path(__file__).resolve().parents[3]
INDEX = json.loads((REPO / 'configs' / 'index.json').read_text(encoding='utf-8'))
# preset -> (model card size, unit, LLM family as built natively)
RELEASED = {
    'internvl2-1b': (938, 1e6, 'Qwen2ForCausalLM'),
    'internvl2-2b': (2.21, 1e9, 'LlamaForCausalLM'),  # InternLM2 runs as Llama
    'internvl2-4b': (4.15, 1e9, 'Phi3ForCausalLM'),
    'internvl2-8b': (8.08, 1e9, 'LlamaForCausalLM'),
    'internvl2-26b': (25.51, 1e9, 'LlamaForCausalLM'),
}
SIZE_CONFIGS = sorted(name for name in INDEX if name.startswith('xtuner_ext_internvl2_') and 'tiny' not in name)
NEVER_ADAPTED = ('lm_head', 'embed_tokens')


def preset_of(config_name: str) -> str:
    size = config_name.split('_')[-2]  # xtuner_ext_internvl2_<size>_<method>
    return f'internvl2-{size}'


def meta_model(preset: str) -> InternVLChatModel:
    config = InternVLChatConfig(official_config_dict(preset), source=f'{preset} preset')
    with torch.device('meta'):
        return InternVLChatModel(config)


@pytest.fixture(scope='module')
def models():
    cache = {}

    def get(preset):
        if preset not in cache:
            cache[preset] = meta_model(preset)
        return cache[preset]
    return get


def linears_per_layer(llm) -> int:
    """Phi-3 fuses q/k/v and gate/up: 4 linear layers per block; InternLM2 (as Llama) and Qwen2 have 7."""
    return 4 if type(llm).__name__ == 'Phi3ForCausalLM' else 7


def test_every_size_and_method_is_shipped():
    sizes = {preset_of(name) for name in SIZE_CONFIGS}
    assert sizes == set(RELEASED)
    assert {name.rsplit('_', 1)[1] for name in SIZE_CONFIGS} == {'full', 'lora', 'qlora'}
    assert len(SIZE_CONFIGS) == 15


@pytest.mark.parametrize('preset', sorted(RELEASED))
def test_full_size_parameter_count_matches_the_model_card(preset, models):
    model = models(preset)
    assert all(p.is_meta for p in model.parameters())
    card, unit, llm_class = RELEASED[preset]
    count = sum(p.numel() for p in model.parameters())
    assert abs(count / unit - card) <= 0.5 * (1 if unit == 1e6 else 0.01), count
    assert type(model.language_model).__name__ == llm_class


@pytest.mark.parametrize('name', SIZE_CONFIGS)
def test_config_lora_and_quantisation_fit_its_llm(name, models, monkeypatch):
    from peft import LoraConfig, inject_adapter_in_model

    monkeypatch.setenv('XTUNER_EXT_MODEL_PATH', '/nonexistent/model')
    monkeypatch.setenv('XTUNER_EXT_DATA_ROOT', '/nonexistent/data')
    cfg = Config.fromfile(str(REPO / 'configs' / INDEX[name]))
    llm = models(preset_of(name)).language_model
    if cfg.model.quantization_llm:
        skip = tuple(cfg.model.quantization_llm['skip_modules'])
        quantized = _linear_names(llm, QuantizationSettings(skip_modules=skip).skip_modules)
        assert quantized and not any(part in n for n in quantized for part in NEVER_ADAPTED)
        assert len(quantized) == linears_per_layer(llm) * llm.config.num_hidden_layers
    if cfg.model.llm_lora is None:
        assert cfg.model.freeze_llm is False  # full fine-tune
        return
    lora = {k: v for k, v in cfg.model.llm_lora.items() if k != 'type'}
    with torch.device('meta'):
        adapted = inject_adapter_in_model(LoraConfig(**lora), type(llm)(llm.config))  # raises on unknown targets
    wrapped = {n.rsplit('.lora_A', 1)[0] for n, _ in adapted.named_modules() if n.endswith('.lora_A')}
    assert len(wrapped) == linears_per_layer(llm) * llm.config.num_hidden_layers
    assert not any(part in n for n in wrapped for part in NEVER_ADAPTED)
