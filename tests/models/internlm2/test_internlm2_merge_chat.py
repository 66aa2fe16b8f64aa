"""A LoRA adapter (as pth_to_hf writes it) merged into the base, written in the official layout,
reloads strictly with the same outputs; chat() prompts exactly as XTuner's training encodes."""
from pathlib import Path

import pytest
import torch

from xtuner_ext.models.internlm2 import internlm2_tokenizer, load_internlm2
from xtuner_ext.models.internlm2.chat import build_prompt, chat, chat_template
from xtuner_ext.models.internlm2.merge import merge_internlm2_adapter

TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']
IDS = torch.tensor([[1, 449, 30, 31, 448, 12, 449, 40, 41, 42]])


def lora_model(base: Path, trained: bool):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(load_internlm2(base, torch_dtype='float32'),
                           LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS, task_type='CAUSAL_LM'))
    if trained:  # stand-in for training: non-zero B matrices
        generator = torch.Generator().manual_seed(0)
        for name, param in model.named_parameters():
            if '.lora_B.' in name:
                param.data = 0.2 * torch.randn(param.shape, generator=generator)
    return model.eval()


@pytest.fixture(scope='module')
def adapter(tiny_internlm2_dir, tmp_path_factory):
    model = lora_model(tiny_internlm2_dir, trained=True)
    folder = tmp_path_factory.mktemp('adapter') / 'hf'
    model.save_pretrained(str(folder), safe_serialization=False)  # pth_to_hf's default: adapter_model.bin
    with torch.no_grad():
        return folder, model(IDS).logits


def test_merged_folder_reloads_strictly_with_the_adapter_outputs(tiny_internlm2_dir, adapter, tmp_path):
    folder, adapted_logits = adapter
    out = merge_internlm2_adapter(tiny_internlm2_dir, folder, tmp_path / 'merged', torch_dtype='float32')
    merged = load_internlm2(out)  # strict: every official key present, nothing extra
    with torch.no_grad():
        torch.testing.assert_close(merged(IDS).logits, adapted_logits, atol=1e-5, rtol=1e-5)
    base = load_internlm2(tiny_internlm2_dir, torch_dtype='float32')
    with torch.no_grad():
        assert (base(IDS).logits - adapted_logits).abs().max() > 1e-2  # the adapter did change the model


def test_merged_folder_keeps_the_base_dtype_and_files(tiny_internlm2_dir, adapter, tmp_path):
    import json

    out = merge_internlm2_adapter(tiny_internlm2_dir, adapter[0], tmp_path / 'merged_bf16')
    assert json.loads((out / 'config.json').read_text())['torch_dtype'] == 'bfloat16'
    assert load_internlm2(out).dtype == torch.bfloat16
    assert (out / 'tokenizer.json').read_bytes() == (tiny_internlm2_dir / 'tokenizer.json').read_bytes()
    assert not list(tmp_path.glob('.*tmp*'))


def test_untrained_adapter_is_refused(tiny_internlm2_dir, tmp_path):
    lora_model(tiny_internlm2_dir, trained=False).save_pretrained(str(tmp_path / 'zero'))
    with pytest.raises(ValueError, match='every LoRA B matrix is zero'):
        merge_internlm2_adapter(tiny_internlm2_dir, tmp_path / 'zero', tmp_path / 'out')


def test_adapter_folder_is_checked(tiny_internlm2_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match='xtuner convert pth_to_hf'):
        merge_internlm2_adapter(tiny_internlm2_dir, tmp_path, tmp_path / 'out')


def test_chat_prompt_is_the_training_encoding(tiny_internlm2_dir):
    """The ids chat() feeds the model are the ids XTuner's dataset pipeline trains on, up to the answer."""
    from xtuner.dataset.map_fns import openai_map_fn, template_map_fn_factory
    from xtuner.dataset.utils import encode_fn

    tokenizer = internlm2_tokenizer(str(tiny_internlm2_dir))
    record = {'messages': [{'role': 'user', 'content': '你是谁'}, {'role': 'assistant', 'content': '我是小助手'}]}
    from mmengine.config import ConfigDict

    example = template_map_fn_factory(template=ConfigDict(chat_template()))(openai_map_fn(record))
    trained = encode_fn(example, tokenizer, max_length=256)['input_ids']
    prompt = [tokenizer.bos_token_id] + tokenizer.encode(build_prompt('你是谁'), add_special_tokens=False)
    answer = tokenizer.encode('我是小助手<|im_end|>\n', add_special_tokens=False)  # SUFFIX, then SEP
    assert trained == prompt + answer


def test_config_spells_out_xtuners_internlm2_chat_template(repo_root):
    from mmengine.config import Config

    cfg = Config.fromfile(str(repo_root / 'configs' / 'internlm2' / 'internlm2_chat_1_8b_qlora_assistant.py'))
    assert dict(cfg.prompt_template) == chat_template()
    assert cfg.evaluation_inputs[:2] == ['请你介绍一下你自己', '你是谁']


def test_chat_is_greedy_and_stops(tiny_internlm2_dir):
    model = load_internlm2(tiny_internlm2_dir, torch_dtype='float32')
    tokenizer = internlm2_tokenizer(str(tiny_internlm2_dir))
    first = chat(model, tokenizer, '你是谁', max_new_tokens=8)
    assert first == chat(model, tokenizer, '你是谁', max_new_tokens=8) and '<|im_end|>' not in first
