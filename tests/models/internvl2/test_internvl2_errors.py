"""Bad inputs fail with errors that name the problem."""
import json
import re
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import PreTrainedTokenizerFast

from xtuner_ext.models.internvl2 import (InternVLChatConfig, InternVLChatModel, build_chat_prompt, load_tokenizer,
                                         require_image_tokens)


@pytest.fixture
def copy_of(fixture_dir, tmp_path):
    """A writable copy of the reference checkpoint folder."""
    folder = tmp_path / 'ckpt'
    shutil.copytree(fixture_dir, folder)
    for file in folder.iterdir():
        file.chmod(0o644)
    return folder


def _edit_config(folder, edit):
    config = json.loads((folder / 'config.json').read_text())
    edit(config)
    (folder / 'config.json').write_text(json.dumps(config))


def _edit_weights(folder, edit):
    tensors = load_file(str(folder / 'model.safetensors'))
    edit(tensors)
    save_file(tensors, str(folder / 'model.safetensors'), metadata={'format': 'pt'})


def test_official_only_arguments_are_refused_clearly(fixture_dir):
    with pytest.raises(TypeError, match=r"unexpected argument\(s\) \['device_map'\]; place the model with device="):
        InternVLChatModel.from_pretrained(fixture_dir, device_map='auto')
    assert InternVLChatModel.from_pretrained(fixture_dir, trust_remote_code=True).dtype == torch.bfloat16


def test_missing_folder_and_missing_config(tmp_path):
    with pytest.raises(FileNotFoundError, match='is not a directory'):
        InternVLChatModel.from_pretrained(tmp_path / 'nope')
    with pytest.raises(FileNotFoundError, match='has no config.json'):
        InternVLChatModel.from_pretrained(tmp_path)


def test_folder_of_another_model_type(copy_of):
    _edit_config(copy_of, lambda c: c.update(model_type='llava'))
    with pytest.raises(ValueError, match="model_type 'llava', expected 'internvl_chat'.*not an InternVL2 checkpoint"):
        InternVLChatModel.from_pretrained(copy_of)


def test_config_without_llm_config(copy_of):
    _edit_config(copy_of, lambda c: c.pop('llm_config'))
    with pytest.raises(ValueError, match="has no 'llm_config'"):
        InternVLChatConfig.from_pretrained(copy_of)


def test_unsupported_llm_architecture(copy_of):
    _edit_config(copy_of, lambda c: c['llm_config'].update(architectures=['MistralForCausalLM']))
    with pytest.raises(ValueError, match="'MistralForCausalLM' is not supported; supported LLM architectures"):
        InternVLChatModel.from_pretrained(copy_of)


def test_unsupported_template(copy_of):
    _edit_config(copy_of, lambda c: c.update(template='vicuna_v1.1'))
    with pytest.raises(ValueError, match="chat template 'vicuna_v1.1' is not supported"):
        InternVLChatConfig.from_pretrained(copy_of)


def test_no_weights(copy_of):
    (copy_of / 'model.safetensors').unlink()
    with pytest.raises(FileNotFoundError, match='has no model.safetensors or model.safetensors.index.json'):
        InternVLChatModel.from_pretrained(copy_of)


def test_missing_weight_is_named(copy_of):
    _edit_weights(copy_of, lambda t: t.pop('language_model.model.layers.1.ffn_norm.weight'))
    with pytest.raises(ValueError, match=r'missing 1 key\(s\): language_model.model.layers.1.post_attention_layernorm'):
        InternVLChatModel.from_pretrained(copy_of)


def test_unknown_weight_is_named(copy_of):
    _edit_weights(copy_of, lambda t: t.update({'language_model.model.layers.0.attention.rotary.inv_freq': torch.ones(2),
                                               'extra_head.weight': torch.ones(2)}))
    with pytest.raises(ValueError, match=r'2 checkpoint key\(s\) are not part of.*: extra_head.weight, '
                                         r'language_model.model.layers.0.attention.rotary.inv_freq'):
        InternVLChatModel.from_pretrained(copy_of)


def test_shape_mismatch_is_named(copy_of):
    _edit_config(copy_of, lambda c: c['llm_config'].update(intermediate_size=256))
    message = r'shape mismatch.*mlp.down_proj.weight: checkpoint \(64, 128\) vs model \(64, 256\)'
    with pytest.raises(ValueError, match=message):
        InternVLChatModel.from_pretrained(copy_of)


def test_missing_shard_is_named(fixture_dir, tmp_path):
    InternVLChatModel.from_pretrained(fixture_dir).save_pretrained(tmp_path, max_shard_size=100_000)
    (tmp_path / 'model-00002-of-00008.safetensors').unlink()
    with pytest.raises(FileNotFoundError, match=r"lists shard\(s\) missing.*model-00002-of-00008.safetensors"):
        InternVLChatModel.from_pretrained(tmp_path)


@pytest.mark.parametrize('damage', ['truncated', 'random bytes', 'empty'])
def test_corrupt_weights_file_is_named_with_the_remedy(copy_of, damage):
    weights = copy_of / 'model.safetensors'
    data = weights.read_bytes()
    weights.write_bytes({'truncated': data[:len(data) // 2], 'random bytes': bytes(range(256)) * 16,
                         'empty': b''}[damage])
    message = (rf'{re.escape(str(weights))} is truncated or corrupt \(\d+ bytes; safetensors: .*\), '
               r'e\.g\. an interrupted download or copy: download or copy the checkpoint folder again')
    with pytest.raises(ValueError, match=message):
        InternVLChatModel.from_pretrained(copy_of)


def test_corrupt_shard_index_is_named(fixture_dir, tmp_path):
    InternVLChatModel.from_pretrained(fixture_dir).save_pretrained(tmp_path, max_shard_size=100_000)
    index = tmp_path / 'model.safetensors.index.json'
    index.write_text(index.read_text()[:100])
    with pytest.raises(ValueError, match=r'model.safetensors.index.json is truncated or corrupt \(not valid JSON'):
        InternVLChatModel.from_pretrained(tmp_path)


def test_missing_embedded_default_says_how_to_make_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # any folder but the repository root
    with pytest.raises(FileNotFoundError, match=r'embedded/internvl2_tiny is not a directory.*run `make demo` once in '
                                                r'the repository root.*or set XTUNER_EXT_MODEL_PATH'):
        InternVLChatModel.from_pretrained('embedded/internvl2_tiny')


def test_missing_folder_from_the_variable_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv('XTUNER_EXT_MODEL_PATH', str(tmp_path / 'moved'))
    with pytest.raises(FileNotFoundError, match=r'It comes from XTUNER_EXT_MODEL_PATH=.*moved: point it at an '
                                                r'InternVL2 folder'):
        InternVLChatModel.from_pretrained(tmp_path / 'moved')


def test_tokenizer_without_img_context(fixture_dir, tmp_path):
    data = json.loads((fixture_dir / 'tokenizer.json').read_text())
    data['added_tokens'] = [t for t in data['added_tokens'] if t['content'] != '<IMG_CONTEXT>']
    folder = tmp_path / 'tok'
    folder.mkdir()
    (folder / 'tokenizer.json').write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"has no <IMG_CONTEXT> token\(s\)"):
        load_tokenizer(folder)
    with pytest.raises(ValueError, match='<IMG_CONTEXT>'):
        require_image_tokens(PreTrainedTokenizerFast(tokenizer_file=str(folder / 'tokenizer.json')))


def test_image_token_count_mismatch_is_an_error_not_a_truncation(fp32_model, fixture_dir, reference):
    ref, tensors = reference
    fp32_model.img_context_token_id = ref['img_context_token_id']
    prompt = build_chat_prompt(ref['question'], num_patches_list=[1])  # 256 tokens for 2 tiles
    ids = load_tokenizer(fixture_dir)(prompt, return_tensors='pt').input_ids
    with pytest.raises(ValueError, match='256 <IMG_CONTEXT> tokens in input_ids but 2 tiles x 256 = 512 features'):
        fp32_model(tensors['pixel_values'].float(), ids)


def test_forward_without_img_context_token_id(fixture_dir, reference):
    _, tensors = reference
    model = InternVLChatModel.from_pretrained(fixture_dir)
    with pytest.raises(ValueError, match='img_context_token_id is not set'):
        model(tensors['pixel_values'], tensors['input_ids'])
