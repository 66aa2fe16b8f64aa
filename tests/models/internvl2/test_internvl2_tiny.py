"""make_tiny_model: official layout, determinism, and other shapes that round-trip, generate and chat."""
import json
from pathlib import Path
import runpy

import pytest
import torch
from PIL import Image

from xtuner_ext.models.internvl2 import InternVLChatModel, load_image, load_tokenizer
from xtuner_ext.models.internvl2.tiny import PRESETS, make_tiny_model, official_config_dict

REPO_ROOT = Path(__file__).resolve().parents[3]

WEIGHT_AND_CONFIG_FILES = ('config.json', 'generation_config.json', 'model.safetensors')

VARIANTS = {
    'mha-8x8-1layer': dict(llm_heads=8, llm_kv_heads=8, llm_layers=1, vit_layers=1),
    'gqa-4x1-3layers-bias': dict(llm_heads=4, llm_kv_heads=1, llm_layers=3, llm_bias=True),
    'max-patch-2-select-2': dict(max_dynamic_patch=2, select_layer=-2, vit_layers=3),
    'rmsnorm-qknorm-224px': dict(vit_norm='rms_norm', qk_normalization=True, image_size=224, llm_hidden=128,
                                 llm_heads=2, llm_kv_heads=1),
}


def test_tiny_config_has_the_official_layout(fixture_dir):
    """The default tiny config is key-for-key and value-for-value the fixture's official config."""
    fixture = json.loads((fixture_dir / 'config.json').read_text())
    assert official_config_dict('tiny') == fixture


def test_same_seed_same_files_other_seed_other_weights(tiny_dir, tmp_path):
    again = make_tiny_model(tmp_path / 'again', seed=0)
    other = make_tiny_model(tmp_path / 'other', seed=1)
    for name in WEIGHT_AND_CONFIG_FILES + ('tokenizer.json', 'tokenizer_config.json'):
        assert (again / name).read_bytes() == (tiny_dir / name).read_bytes(), name
    assert (other / 'model.safetensors').read_bytes() != (tiny_dir / 'model.safetensors').read_bytes()


def test_tokenizer_has_every_special_token_and_prepends_bos(tiny_dir):
    tokenizer = load_tokenizer(tiny_dir)
    specials = ['<unk>', '<s>', '</s>', '<|im_start|>', '<|im_end|>', '<img>', '</img>', '<IMG_CONTEXT>', '<quad>',
                '</quad>', '<ref>', '</ref>', '<box>', '</box>']
    ids = tokenizer.convert_tokens_to_ids(specials)
    assert len(set(ids)) == len(specials) and tokenizer.unk_token_id == 0 and ids[1:3] == [1, 2]
    encoded = tokenizer('<img><IMG_CONTEXT></img>\n看图 look').input_ids
    assert encoded[:4] == [1] + tokenizer.convert_tokens_to_ids(['<img>', '<IMG_CONTEXT>', '</img>'])
    assert tokenizer.pad_token == '</s>'
    config = json.loads((tiny_dir / 'config.json').read_text())
    assert config['llm_config']['vocab_size'] == len(tokenizer)


def _round_trip_and_chat(folder, tmp_path):
    model = InternVLChatModel.from_pretrained(folder, torch_dtype=torch.float32)
    bf16 = InternVLChatModel.from_pretrained(folder)
    bf16.save_pretrained(tmp_path / 'saved')
    for name in WEIGHT_AND_CONFIG_FILES:
        assert (tmp_path / 'saved' / name).read_bytes() == (folder / name).read_bytes(), name
    tokenizer = load_tokenizer(folder)
    config = model.config
    image = Image.new('RGB', (900, 300), (200, 30, 60))
    pixel_values = load_image(image, input_size=config.image_size, max_num=config.max_dynamic_patch)
    response, history = model.chat(tokenizer, pixel_values, '描述这张图片', dict(max_new_tokens=6, do_sample=False),
                                   return_history=True)
    assert isinstance(response, str) and history[0][0] == '<image>\n描述这张图片'
    follow_up = model.chat(tokenizer, None, 'and then?', dict(max_new_tokens=4, do_sample=False), history=history)
    assert isinstance(follow_up, str)
    return model, tokenizer, pixel_values


@pytest.mark.parametrize('overrides', list(VARIANTS.values()), ids=list(VARIANTS))
def test_variant_round_trips_bit_exactly_and_chats(overrides, tmp_path):
    folder = make_tiny_model(tmp_path / 'model', seed=7, **overrides)
    model, tokenizer, pixel_values = _round_trip_and_chat(folder, tmp_path)
    # Greedy generate through the KV cache agrees with a full forward pass on the same prompt.
    model.img_context_token_id = tokenizer.convert_tokens_to_ids('<IMG_CONTEXT>')
    prompt = '<img>' + '<IMG_CONTEXT>' * (model.num_image_token * len(pixel_values)) + '</img>\nhi'
    ids = tokenizer(prompt, return_tensors='pt').input_ids
    new = model.generate(pixel_values=pixel_values, input_ids=ids, max_new_tokens=3, do_sample=False)
    with torch.no_grad():
        logits = model(pixel_values, ids).logits
    assert new[0, 0].item() == logits[0, -1].argmax().item()


def test_default_tiny_round_trips_and_chats(tiny_dir, tmp_path):
    _round_trip_and_chat(tiny_dir, tmp_path)


def test_batch_chat_matches_chat(tiny_dir):
    model = InternVLChatModel.from_pretrained(tiny_dir, torch_dtype=torch.float32)
    tokenizer = load_tokenizer(tiny_dir)
    tiles = [load_image(Image.new('RGB', (448, 448), c)) for c in ((10, 200, 30), (250, 250, 0))]
    config = dict(max_new_tokens=5, do_sample=False)
    batch = model.batch_chat(tokenizer, torch.cat(tiles), ['what is this?', '这是什么颜色？'], config,
                             num_patches_list=[1, 1])
    single = [model.chat(tokenizer, t, q, config) for t, q in zip(tiles, ['what is this?', '这是什么颜色？'])]
    assert batch == single


def test_internvl2_2b_preset_meta_build_has_the_real_parameter_count():
    from xtuner_ext.models.internvl2 import InternVLChatConfig

    config = InternVLChatConfig(official_config_dict('internvl2-2b'), source='internvl2-2b preset')
    with torch.device('meta'):
        model = InternVLChatModel(config)
    assert all(p.is_meta for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) == 2_205_754_368
    assert config.num_image_token == 256 and config.max_dynamic_patch == PRESETS['internvl2-2b']['max_dynamic_patch']


def test_unknown_override_and_existing_folder_are_refused(tiny_dir, tmp_path):
    with pytest.raises(TypeError, match="unknown override.*llm_head'"):
        make_tiny_model(tmp_path / 'x', llm_head=3)
    with pytest.raises(FileExistsError, match='already exists'):
        make_tiny_model(tiny_dir)


def test_cli_writes_the_same_files_as_the_function(tmp_path):
    out = tmp_path / 'cli'
    cli = runpy.run_path(str(REPO_ROOT / 'tools' / 'make_tiny_model.py'), run_name='make_tiny_model_cli')
    cli['main']([str(out), '--seed', '5', '--llm-kv-heads', '1', '--max-dynamic-patch', '2'])
    direct = make_tiny_model(tmp_path / 'direct', seed=5, llm_kv_heads=1, max_dynamic_patch=2)
    for name in WEIGHT_AND_CONFIG_FILES:
        assert (out / name).read_bytes() == (direct / name).read_bytes(), name
