"""Official layout in, official layout out: key map, wqkv surgery, bit-exact save, shards."""
import hashlib
import json

import pytest
import torch
from safetensors.torch import load_file

from xtuner_ext.models.internvl2 import InternVLChatModel, fuse_wqkv, split_wqkv


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize('heads,kv_heads', [(4, 2), (8, 1), (4, 4), (6, 3)])
@pytest.mark.parametrize('bias', [False, True])
def test_split_wqkv_follows_official_grouping_and_round_trips(heads, kv_heads, bias):
    head_dim, hidden = 8, 16
    rows = (heads + 2 * kv_heads) * head_dim
    fused = torch.randn(rows) if bias else torch.randn(rows, hidden)
    q, k, v = split_wqkv(fused, heads, kv_heads)
    # The official attention reads the fused rows as '(h gs d)', gs = groups + 2: per KV head h,
    # `groups` query heads, then h's key head, then h's value head.
    groups, block = heads // kv_heads, (heads // kv_heads + 2) * head_dim
    for h in range(kv_heads):
        rows = fused[h * block:(h + 1) * block]
        for g in range(groups):
            query_head = h * groups + g  # the query head that shares KV head h
            expected = rows[g * head_dim:(g + 1) * head_dim]
            assert torch.equal(q[query_head * head_dim:(query_head + 1) * head_dim], expected)
        assert torch.equal(k[h * head_dim:(h + 1) * head_dim], rows[groups * head_dim:(groups + 1) * head_dim])
        assert torch.equal(v[h * head_dim:(h + 1) * head_dim], rows[(groups + 1) * head_dim:])
    assert all(t.is_contiguous() for t in (q, k, v))
    assert torch.equal(fuse_wqkv(q, k, v, heads, kv_heads), fused)


def test_native_names_are_llama_and_official_names_round_trip(fp32_model, reference):
    ref, _ = reference
    native = fp32_model.state_dict()
    assert 'language_model.model.layers.0.self_attn.k_proj.weight' in native
    assert not any('wqkv' in key for key in native)
    official = fp32_model.official_state_dict()
    assert list(official) == ref['state_dict_keys']  # same names, same order
    assert {k: list(v.shape) for k, v in official.items()} == ref['state_dict_shapes']


def test_load_save_is_bit_exact(fixture_dir, reference, tmp_path):
    ref, _ = reference
    model = InternVLChatModel.from_pretrained(fixture_dir)
    model.save_pretrained(tmp_path)
    saved, original = load_file(str(tmp_path / 'model.safetensors')), load_file(str(fixture_dir / 'model.safetensors'))
    assert saved.keys() == original.keys()
    for key in original:
        assert saved[key].dtype == original[key].dtype and torch.equal(saved[key], original[key]), key
    assert _sha(tmp_path / 'model.safetensors') == ref['model_safetensors_sha256']
    for name in ('config.json', 'generation_config.json'):
        assert (tmp_path / name).read_bytes() == (fixture_dir / name).read_bytes(), name


def test_fp32_save_records_dtype_and_loads_back_exactly(fixture_dir, fp32_model, tmp_path):
    fp32_model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / 'config.json').read_text())
    assert config['torch_dtype'] == 'float32'
    reloaded = InternVLChatModel.from_pretrained(tmp_path, torch_dtype=torch.bfloat16)
    original = load_file(str(fixture_dir / 'model.safetensors'))
    for key, value in reloaded.official_state_dict().items():
        assert torch.equal(value, original[key]), key


def test_sharded_save_and_load(fixture_dir, tmp_path):
    model = InternVLChatModel.from_pretrained(fixture_dir)
    model.save_pretrained(tmp_path, max_shard_size=100_000)
    index = json.loads((tmp_path / 'model.safetensors.index.json').read_text())
    shards = sorted(set(index['weight_map'].values()))
    assert len(shards) > 1 and not (tmp_path / 'model.safetensors').exists()
    reloaded = InternVLChatModel.from_pretrained(tmp_path)
    original = load_file(str(fixture_dir / 'model.safetensors'))
    merged = {k: v for shard in shards for k, v in load_file(str(tmp_path / shard)).items()}
    assert merged.keys() == original.keys() and all(torch.equal(merged[k], original[k]) for k in original)
    assert all(torch.equal(a, b) for a, b in zip(reloaded.state_dict().values(), model.state_dict().values()))


def test_from_pretrained_builds_on_meta_and_leaves_nothing_there(fixture_dir):
    model = InternVLChatModel.from_pretrained(fixture_dir, torch_dtype='float32')
    assert not any(t.is_meta for t in list(model.parameters()) + list(model.buffers()))
    assert not model.training
    rotary = model.language_model.model.rotary_emb.inv_freq
    head_dim = 64 // 4
    expected = 1.0 / (1e6 ** (torch.arange(0, head_dim, 2).float() / head_dim))
    assert torch.allclose(rotary, expected)


def test_qwen2_llm_uses_an_identity_key_map(tmp_path):
    """InternVL2-1B style: Qwen2 LLM under native transformers names, Hermes-2 template."""
    from xtuner_ext.models.internvl2 import InternVLChatConfig, load_tokenizer
    from xtuner_ext.models.internvl2.tiny import build_tokenizer, official_config_dict, random_native_state_dict

    raw = official_config_dict('tiny', llm_kv_heads=1)
    raw['template'] = 'Hermes-2'
    raw['llm_config'].update(architectures=['Qwen2ForCausalLM'], model_type='qwen2', auto_map=None)
    config = InternVLChatConfig(raw)
    with torch.device('meta'):
        model = InternVLChatModel(config)
    model.load_native_state_dict(random_native_state_dict(model, 0, torch.bfloat16))
    model.save_pretrained(tmp_path)
    build_tokenizer().save_pretrained(str(tmp_path))
    saved = load_file(str(tmp_path / 'model.safetensors'))
    assert 'language_model.model.layers.0.self_attn.q_proj.bias' in saved
    reloaded = InternVLChatModel.from_pretrained(tmp_path, torch_dtype=torch.float32)
    assert type(reloaded.language_model).__name__ == 'Qwen2ForCausalLM'
    reloaded.save_pretrained(tmp_path / 'again')
    assert all(torch.equal(v.float(), saved[k].float())
               for k, v in load_file(str(tmp_path / 'again' / 'model.safetensors')).items())
    pixel_values = torch.zeros(1, 3, 448, 448)
    assert isinstance(reloaded.chat(load_tokenizer(tmp_path), pixel_values, 'hi', dict(max_new_tokens=3)), str)
