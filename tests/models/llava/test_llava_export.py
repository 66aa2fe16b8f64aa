"""A LLaVAModel (native InternLM2 + CLIP, LoRA on both) exported to the llava-hf layout reloads with
transformers' own LlavaForConditionalGeneration (no remote code) and answers as the in-memory model."""
from pathlib import Path

import json

import pytest
import torch

REPO = Path(__file__).resolve().parents[3]
FINETUNE = REPO / 'configs' / 'llava' / 'llava_internlm2_tiny_clip_tiny_qlora_lora_finetune.py'

QUESTION = 'Describe this image.'


def build_model(config):
    from xtuner.registry import BUILDER

    import xtuner_ext  # noqa: F401

    config.model.pretrained_pth = None
    config.model.llm.quantization = None
    model = BUILDER.build(config.model)
    generator = torch.Generator().manual_seed(0)
    for name, param in model.named_parameters():
        if '.lora_B.' in name or name.startswith('projector.'):  # stand-in for training
            param.data = 0.3 * torch.randn(param.shape, generator=generator)
    return model.eval()


@pytest.fixture(scope='module')
def exported(llava_inputs, tmp_path_factory):
    from mmengine.config import Config
    from xtuner.registry import BUILDER

    from xtuner_ext.models.llava.chat import llava_chat
    from xtuner_ext.models.llava.export import export_llava_hf

    with pytest.MonkeyPatch.context() as patch:
        for key, value in llava_inputs.items():
            patch.setenv(key, value)
        config = Config.fromfile(str(FINETUNE))
    model = build_model(config)
    tokenizer, image_processor = BUILDER.build(config.tokenizer), BUILDER.build(config.image_processor)
    image = f"{llava_inputs['XTUNER_EXT_DATA_ROOT']}/test_img/oph.png"
    answer = llava_chat(model, tokenizer, image_processor, image, QUESTION, max_new_tokens=12)
    out = export_llava_hf(model, tokenizer, image_processor, tmp_path_factory.mktemp('hf') / 'llava_hf')
    return out, answer, image


def test_transformers_reloads_it_and_answers_the_same(exported):
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from xtuner_ext.models.llava.cli import hf_chat

    out, answer, image = exported
    model = LlavaForConditionalGeneration.from_pretrained(str(out)).eval()
    processor = AutoProcessor.from_pretrained(str(out))
    assert len(answer) > 0
    assert hf_chat(model, processor, image, QUESTION, max_new_tokens=12) == answer


def test_folder_is_the_plain_llava_hf_layout(exported):
    out = exported[0]
    config = json.loads((out / 'config.json').read_text())
    assert config['architectures'] == ['LlavaForConditionalGeneration'] and 'auto_map' not in config
    assert config['text_config']['model_type'] == 'llama' and config['vision_config']['model_type'] == 'clip_vision_model'
    assert not list(out.glob('*.py'))
    from safetensors import safe_open
    with safe_open(str(out / 'model.safetensors'), 'pt') as handle:
        keys = set(handle.keys())
    assert 'multi_modal_projector.linear_2.bias' in keys and 'language_model.lm_head.weight' in keys
    assert not [k for k in keys if 'lora' in k]


def test_chat_template_is_the_training_prompt(exported):
    from transformers import AutoProcessor

    from xtuner_ext.models.internlm2.chat import build_prompt

    processor = AutoProcessor.from_pretrained(str(exported[0]))
    messages = [{'role': 'user', 'content': [{'type': 'image'}, {'type': 'text', 'text': QUESTION}]}]
    assert processor.apply_chat_template(messages, add_generation_prompt=True) == build_prompt('<image>\n' + QUESTION)


def test_checkpoint_that_does_not_fit_is_refused(llava_env, tmp_path):
    from xtuner_ext.models.llava.export import llava_from_checkpoint

    torch.save({'state_dict': {'projector.model.0.weight': torch.zeros(1)}}, tmp_path / 'bad.pth')
    with pytest.raises(ValueError, match='does not fit'):
        llava_from_checkpoint(str(FINETUNE), str(tmp_path / 'bad.pth'))


def test_internlm2_tokenizer_is_saved_for_transformers_own_class(tmp_path):
    """The real InternLM2 tokenizer, saved into a llava-hf folder, loads with AutoTokenizer (no remote
    code) and encodes as the official one."""
    from transformers import AutoTokenizer

    from xtuner_ext.models.internlm2 import internlm2_tokenizer
    from xtuner_ext.models.llava.export import name_tokenizer_class_for_transformers

    folder = REPO / 'tests' / 'fixtures' / 'internlm2_tokenizer'
    internlm2_tokenizer(str(folder)).save_pretrained(str(tmp_path))
    name_tokenizer_class_for_transformers(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path), use_fast=False)
    assert type(tokenizer).__name__ == 'LlamaTokenizer'
    for case in json.loads((folder / 'reference.json').read_text(encoding='utf-8'))['cases']:
        assert tokenizer(case['text']).input_ids == case['input_ids'], case['id']
