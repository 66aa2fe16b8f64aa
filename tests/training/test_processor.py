"""InternVL2Processor: one answer per question (tiles, pixels, prompt, encoding, token count), checked
against the official rules, and the preflight check counting exactly what training encodes."""
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from training_helpers import official_num_tiles
from xtuner_ext.data.check import main as check_main
from xtuner_ext.data.internvl2_dataset import InternVL2ConversationDataset
from xtuner_ext.models.internvl2 import InternVL2Processor, InternVLChatConfig, TilingSpec, build_transform

REPO = Path(__file__).resolve().parents[2]
TINY_CONFIG = REPO / 'configs' / 'internvl' / 'internvl2_tiny_qlora.py'
MAX_LENGTH = 1024


def model_copy(src: Path, dst: Path, **changes) -> Path:
    """The tiny model folder with config.json keys changed (a value of None removes the key)."""
    folder = Path(shutil.copytree(src, dst))
    config = json.loads((folder / 'config.json').read_text(encoding='utf-8'))
    for key, value in changes.items():
        config.pop(key) if value is None else config.__setitem__(key, value)
    (folder / 'config.json').write_text(json.dumps(config, ensure_ascii=False), encoding='utf-8')
    return folder


@pytest.fixture(scope='module')
def static_model(tiny_model_dir, tmp_path_factory):
    return model_copy(tiny_model_dir, tmp_path_factory.mktemp('static') / 'm', dynamic_image_size=False)


@pytest.fixture(scope='module')
def bare_model(tiny_model_dir, tmp_path_factory):
    """No tiling keys at all: the official InternVLChatConfig defaults apply."""
    return model_copy(tiny_model_dir, tmp_path_factory.mktemp('bare') / 'm', dynamic_image_size=None,
                      use_thumbnail=None, min_dynamic_patch=None, max_dynamic_patch=None)


WIDE = (1000, 300)  # several tiles when tiling is dynamic


def test_tiles_follow_the_model_config(tiny_model_dir):
    processor = InternVL2Processor.from_pretrained(tiny_model_dir)
    assert processor.tiling == TilingSpec(448, True, 1, 2, True)  # the tiny model's config.json
    assert processor.num_tiles(WIDE) == official_num_tiles(*WIDE, 1, 2) == 3


def test_dynamic_image_size_false_is_one_whole_image_tile(static_model):
    """Official: without dynamic_image_size the whole image is resized to one tile, no thumbnail."""
    processor = InternVL2Processor.from_pretrained(static_model)
    image = Image.new('RGB', WIDE, (200, 40, 90))
    assert processor.num_tiles(WIDE) == 1
    pixels = processor.pixel_values(image)
    assert torch.equal(pixels, build_transform(448)(image).unsqueeze(0))


def test_absent_tiling_keys_take_the_official_defaults(bare_model):
    config = InternVLChatConfig.from_pretrained(bare_model)
    processor = InternVL2Processor.from_pretrained(bare_model)
    assert processor.tiling == TilingSpec(config.image_size, False, 1, 6, False)
    assert processor.num_tiles(WIDE) == 1


def test_overrides_win_and_none_keeps_the_config(tiny_model_dir, static_model):
    six = InternVL2Processor.from_pretrained(tiny_model_dir, max_dynamic_patch=6, use_thumbnail=None)
    assert six.tiling.max_dynamic_patch == 6 and six.tiling.use_thumbnail
    assert six.num_tiles(WIDE) == official_num_tiles(*WIDE, 1, 6)
    dynamic_again = InternVL2Processor.from_pretrained(static_model, dynamic_image_size=True)
    assert dynamic_again.num_tiles(WIDE) == 3
    with pytest.raises(ValueError, match='unknown tiling override'):
        InternVL2Processor.from_pretrained(tiny_model_dir, max_patches=6)
    with pytest.raises(ValueError, match='min_num <= max_num'):
        InternVL2Processor.from_pretrained(tiny_model_dir, min_dynamic_patch=4, max_dynamic_patch=2)


def test_pixel_values_match_the_tile_count(tiny_model_dir):
    processor = InternVL2Processor.from_pretrained(tiny_model_dir)
    pixels = processor.pixel_values(Image.new('RGB', WIDE, (1, 2, 3)))
    assert pixels.shape == (processor.num_tiles(WIDE), 3, 448, 448)


def test_prompt_is_the_official_chat_prompt():
    """The shared InternVL2 fixture's prompt came from the official chat() code."""
    fixture = REPO / 'tests' / 'fixtures' / 'internvl2_tiny'
    ref = json.loads((fixture / 'reference.json').read_text(encoding='utf-8'))
    processor = InternVL2Processor.from_pretrained(fixture)
    num_patches = ref['vit_embeds_shape'][0]
    assert processor.prompt(ref['question'], None, [num_patches]) == ref['prompt']
    assert processor.prompt(ref['question'].split('\n', 1)[1], None, [num_patches]) == ref['prompt']


def test_encode_starts_with_the_chat_prompt(tiny_model_dir):
    processor = InternVL2Processor.from_pretrained(tiny_model_dir)
    record = dict(image='x.jpg', conversations=[{'from': 'human', 'value': '讲一个梗'}, {'from': 'gpt', 'value': '好。'}])
    encoded = processor.encode(record, 3, MAX_LENGTH)
    prompt_ids = processor.tokenizer(processor.prompt('讲一个梗', None, [3]))['input_ids']
    assert encoded.input_ids[:len(prompt_ids)] == prompt_ids
    assert processor.count_tokens(record, WIDE).total == len(encoded.input_ids)


# ---- the preflight check counts what training encodes, in both of its forms ----
def per_sample_totals(output: str) -> dict:
    """index -> total tokens, from check_data's per-sample table."""
    rows = re.findall(r'^\s*(\d+)\s+\d+x\d+\s+\S+\s+\d+\s+\d+\s+\d+\s+(\d+)\s', output, re.M)
    return {int(index): int(total) for index, total in rows}


def training_totals(model_dir, sample_dir, processor=None) -> dict:
    dataset = InternVL2ConversationDataset(str(model_dir), str(sample_dir / 'train.json'), max_length=MAX_LENGTH,
                                           image_folder=str(sample_dir), processor=processor)
    assert len(dataset) == 40 and not dataset.truncated
    return {i: len(sample['input_ids']) for i, sample in enumerate(dataset.samples)}


def config_with(tmp_path: Path, processor: dict) -> Path:
    path = tmp_path / 'cfg.py'
    path.write_text(f"_base_ = [{str(TINY_CONFIG)!r}]\nprocessor = {processor!r}\nmax_length = {MAX_LENGTH}\n"
                    "train_dataloader = dict(dataset=dict(processor=processor))\n", encoding='utf-8')
    return path


@pytest.mark.parametrize('dynamic', [True, False])
def test_preflight_counts_equal_training_in_config_form(dynamic, tiny_model_dir, sample_dir, tmp_path, monkeypatch,
                                                       capsys):
    monkeypatch.setenv('XTUNER_EXT_MODEL_PATH', str(tiny_model_dir))
    monkeypatch.setenv('XTUNER_EXT_DATA_ROOT', str(sample_dir))
    processor = dict(max_dynamic_patch=2, dynamic_image_size=dynamic)
    assert check_main([str(config_with(tmp_path, processor)), '--per-sample']) == 0
    assert per_sample_totals(capsys.readouterr().out) == training_totals(tiny_model_dir, sample_dir, processor)


@pytest.mark.parametrize('flags, processor', [
    (['--max-dynamic-patch', '2'], dict(max_dynamic_patch=2)),
    (['--max-dynamic-patch', '6', '--no-dynamic-image-size'], dict(max_dynamic_patch=6, dynamic_image_size=False)),
    (['--max-dynamic-patch', '3', '--no-use-thumbnail'], dict(max_dynamic_patch=3, use_thumbnail=False)),
])
def test_preflight_counts_equal_training_in_flag_form(flags, processor, tiny_model_dir, sample_dir, capsys):
    code = check_main(['--data', str(sample_dir / 'train.json'), '--image-folder', str(sample_dir), '--model',
                       str(tiny_model_dir), '--max-length', str(MAX_LENGTH), '--per-sample', *flags])
    assert code == 0
    assert per_sample_totals(capsys.readouterr().out) == training_totals(tiny_model_dir, sample_dir, processor)


def test_static_model_folder_counts_one_tile_everywhere(static_model, sample_dir, capsys):
    check_main(['--data', str(sample_dir / 'train.json'), '--image-folder', str(sample_dir), '--model',
                str(static_model), '--per-sample'])
    totals = per_sample_totals(capsys.readouterr().out)
    assert totals == training_totals(static_model, sample_dir)
    assert all(s['num_tiles'] == 1 for s in InternVL2ConversationDataset(
        str(static_model), str(sample_dir / 'train.json'), max_length=MAX_LENGTH, image_folder=str(sample_dir)).samples)
