"""An official InternLM2 folder loads strictly as LlamaForCausalLM, computes what the (parity-tested)
InternVL2 language model computes, and saves back to identical tensors."""
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from xtuner_ext.models.internlm2 import build_internlm2, internlm2_tokenizer, load_internlm2, save_internlm2

FIXTURES = Path(__file__).resolve().parents[2] / 'fixtures'
FIXTURE_IDS = [1, 292, 392, 63, 3, 409, 163, 333, 163, 448, 449, 12, 40]


def test_logits_match_internvl2_language_model(reference_internlm2_dir):
    from xtuner_ext.models.internvl2 import InternVLChatModel
    internvl2 = InternVLChatModel.from_pretrained(FIXTURES / 'internvl2_tiny', torch_dtype=torch.float32)
    model = load_internlm2(reference_internlm2_dir, torch_dtype='float32')
    ids = torch.tensor([FIXTURE_IDS])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, internvl2.language_model(ids).logits)


def test_save_round_trips_the_official_tensors(reference_internlm2_dir, tmp_path):
    model = load_internlm2(reference_internlm2_dir)  # the checkpoint's bf16
    out = save_internlm2(model, tmp_path / 'saved', base=reference_internlm2_dir)
    original = load_file(str(reference_internlm2_dir / 'model.safetensors'))
    saved = load_file(str(out / 'model.safetensors'))
    assert set(saved) == set(original)
    assert all(torch.equal(saved[k], original[k]) for k in original)
    assert 'model.layers.0.attention.wqkv.weight' in saved
    for name in ('config.json', 'tokenizer.json', 'generation_config.json'):
        assert (out / name).read_bytes() == (reference_internlm2_dir / name).read_bytes()


def test_unknown_key_is_an_error(reference_internlm2_dir, tmp_path):
    folder = shutil.copytree(reference_internlm2_dir, tmp_path / 'extra')
    tensors = load_file(str(folder / 'model.safetensors'))
    tensors['model.layers.0.attention.rotary_emb.inv_freq'] = torch.ones(4)
    save_file(tensors, str(folder / 'model.safetensors'))
    with pytest.raises(ValueError, match=r'not part of the InternLM2 layout: model\.layers\.0\.attention\.rotary'):
        load_internlm2(folder)


def test_missing_key_is_an_error(reference_internlm2_dir, tmp_path):
    folder = shutil.copytree(reference_internlm2_dir, tmp_path / 'missing')
    tensors = load_file(str(folder / 'model.safetensors'))
    del tensors['model.norm.weight']
    save_file(tensors, str(folder / 'model.safetensors'))
    with pytest.raises(ValueError, match=r'missing 1 key\(s\): model\.norm\.weight'):
        load_internlm2(folder)


def test_other_architecture_is_refused(reference_internlm2_dir, tmp_path):
    folder = shutil.copytree(reference_internlm2_dir, tmp_path / 'qwen')
    config = json.loads((folder / 'config.json').read_text())
    config['architectures'] = ['Qwen2ForCausalLM']
    (folder / 'config.json').write_text(json.dumps(config))
    with pytest.raises(ValueError, match="expected 'InternLM2ForCausalLM'"):
        load_internlm2(folder)


def test_builder_quantizes_all_but_the_head(tiny_internlm2_dir):
    import bitsandbytes as bnb

    model = build_internlm2(str(tiny_internlm2_dir), quantization=dict(quant_type='nf4', double_quant=True),
                            device='cpu')
    quantized = {name for name, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)}
    assert len(quantized) == 2 * 7 and 'model.layers.1.mlp.down_proj' in quantized
    assert isinstance(model.lm_head, torch.nn.Linear) and not isinstance(model.lm_head, bnb.nn.Linear4bit)
    assert torch.isfinite(model(torch.tensor([FIXTURE_IDS[:6]])).logits).all()


def test_tokenizer_is_the_exact_internlm2_one():
    """The tokenizer builder gives the official ids (no image tokens needed for a plain LLM)."""
    folder = FIXTURES / 'internlm2_tokenizer'
    reference = json.loads((folder / 'reference.json').read_text(encoding='utf-8'))
    tokenizer = internlm2_tokenizer(str(folder), trust_remote_code=True, padding_side='right')
    assert type(tokenizer).__name__ == 'InternLM2Tokenizer'
    for case in reference['cases']:
        assert tokenizer(case['text']).input_ids == case['input_ids'], case['id']
        assert tokenizer.decode(case['input_ids']) == case['decode'], case['id']
