"""InternVL2ConversationDataset and internvl2_collate_fn on the generated sample set."""
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from training_helpers import IGNORE, label_runs, official_num_tiles
from xtuner_ext.data.internvl2_dataset import InternVL2ConversationDataset, internvl2_collate_fn
from xtuner_ext.data.validate import BadRecordError
from xtuner_ext.models.internvl2 import build_chat_prompt


def context_id(ds):
    return ds.tokenizer.convert_tokens_to_ids('<IMG_CONTEXT>')


def train_records(sample_dir):
    return json.loads((sample_dir / 'train.json').read_text(encoding='utf-8'))


def test_samples_follow_the_data_file(train_dataset, sample_dir, model_config):
    records = train_records(sample_dir)
    assert len(train_dataset) == len(records) == 40 and train_dataset.skipped == 0
    assert [s['image'] for s in train_dataset.samples] == [str(sample_dir / r['image']) for r in records]
    for sample, rec in zip(train_dataset.samples, records):
        question, answer = rec['conversations'][0]['value'], rec['conversations'][1]['value']
        chat_ids = train_dataset.tokenizer(build_chat_prompt(question, None, [sample['num_tiles']],
                                                             model_config.num_image_token))['input_ids']
        assert sample['input_ids'][:len(chat_ids)] == chat_ids
        (start, end), = label_runs(sample['labels'])
        assert start == len(chat_ids) and end == len(sample['input_ids'])
        assert train_dataset.tokenizer.decode(sample['input_ids'][start:]) == answer + '<|im_end|>'


def test_tiles_match_official_tiling_and_image_tokens(train_dataset, model_config):
    n_img = model_config.num_image_token
    seen = set()
    for index, sample in enumerate(train_dataset.samples):
        with Image.open(sample['image']) as image:
            width, height = image.size
        expected = official_num_tiles(width, height, 1, 2, 448, True)
        item = train_dataset[index]
        assert item['pixel_values'].shape == (expected, 3, 448, 448)
        n_context = int((item['input_ids'] == context_id(train_dataset)).sum())
        assert n_context == expected * n_img == sample['num_tiles'] * n_img
        assert torch.equal(item['labels'], torch.tensor(sample['labels']))
        seen.add(expected)
    assert seen == {1, 3}  # the sample set exercises both single-tile and tiled images


def test_max_dynamic_patch_override(tiny_model_dir, sample_dir, model_config):
    ds = InternVL2ConversationDataset(str(tiny_model_dir), str(sample_dir / 'train.json'), max_length=4096,
                                      image_folder=str(sample_dir), processor=dict(max_dynamic_patch=6))
    for sample in ds.samples[:8]:
        with Image.open(sample['image']) as image:
            assert sample['num_tiles'] == official_num_tiles(*image.size, 1, 6)
    assert max(s['num_tiles'] for s in ds.samples) > 3


def write_records(folder: Path, records) -> Path:
    path = folder / 'data.json'
    path.write_text(json.dumps(records, ensure_ascii=False), encoding='utf-8')
    return path


def copy_sample(sample_dir, tmp_path) -> Path:
    return Path(shutil.copytree(sample_dir, tmp_path / 'sample'))


def test_modality_length_sign(tiny_model_dir, sample_dir, tmp_path):
    folder = copy_sample(sample_dir, tmp_path)
    records = train_records(folder)[:3]
    text_only = dict(conversations=[{'from': 'human', 'value': '讲一个梗'}, {'from': 'gpt', 'value': '今天不讲。'}])
    data = write_records(folder, [records[0], text_only, records[1], records[2]])
    ds = InternVL2ConversationDataset(str(tiny_model_dir), str(data), max_length=1024, image_folder=str(folder))
    lengths = [len(s['input_ids']) for s in ds.samples]
    assert ds.modality_length == [lengths[0], -lengths[1], lengths[2], lengths[3]]
    assert ds.length == lengths
    assert 'pixel_values' not in ds[1] and ds.samples[1]['num_tiles'] == 0


def break_image(folder: Path, index: int) -> str:
    rec = train_records(folder)[index]
    path = folder / rec['image']
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 3])  # a truncated JPEG: identified, cannot be decoded
    return rec['image']


def test_broken_image_error_names_file_and_index(tiny_model_dir, sample_dir, tmp_path):
    folder = copy_sample(sample_dir, tmp_path)
    break_image(folder, 5)
    data = folder / 'train.json'
    with pytest.raises(BadRecordError, match=re.escape(f'{data}:5: corrupt_image')):
        InternVL2ConversationDataset(str(tiny_model_dir), str(data), max_length=1024, image_folder=str(folder))


def test_broken_image_skip_counts_and_never_substitutes(tiny_model_dir, sample_dir, tmp_path):
    folder = copy_sample(sample_dir, tmp_path)
    bad = break_image(folder, 5)
    ds = InternVL2ConversationDataset(str(tiny_model_dir), str(folder / 'train.json'), max_length=1024,
                                      image_folder=str(folder), on_bad_record='skip')
    expected = [str(folder / r['image']) for r in train_records(folder) if r['image'] != bad]
    assert len(ds) == 39 and ds.skipped == 1
    assert [s['image'] for s in ds.samples] == expected


def skip_warning(log: Path) -> str:
    lines = [line for line in log.read_text(encoding='utf-8').splitlines() if 'on_bad_record="skip"' in line]
    assert len(lines) == 1, lines
    return lines[0]


def test_skip_warning_names_each_skipped_record_and_reason(tiny_model_dir, sample_dir, tmp_path):
    from mmengine.logging import MMLogger

    folder = copy_sample(sample_dir, tmp_path)
    for index in (2, 7):
        break_image(folder, index)
    log = tmp_path / 'run.log'
    MMLogger.get_instance('skip_warning_test', log_file=str(log))  # print_log('current') writes here
    data = folder / 'train.json'
    InternVL2ConversationDataset(str(tiny_model_dir), str(data), max_length=1024, image_folder=str(folder),
                                 on_bad_record='skip')
    line = skip_warning(log)
    assert f'skipped 2 bad record(s) (on_bad_record="skip"): {data}:2: corrupt_image: ' in line
    assert f'; {data}:7: corrupt_image: ' in line and line.endswith('`python tools/check_data.py` lists them all')


def test_skip_warning_counts_records_that_do_not_fit(tiny_model_dir, train_dataset, sample_dir, tmp_path):
    from mmengine.logging import MMLogger

    three = [i for i, s in enumerate(train_dataset.samples) if s['num_tiles'] == 3]
    log = tmp_path / 'run.log'
    MMLogger.get_instance('skip_too_long_test', log_file=str(log))
    InternVL2ConversationDataset(str(tiny_model_dir), str(sample_dir / 'train.json'), max_length=600,
                                 image_folder=str(sample_dir), on_bad_record='skip')
    assert f'skipped {len(three)} bad record(s) (on_bad_record="skip"): {len(three)} that do not fit max_length=600' \
        in skip_warning(log)


def test_skip_counts_records_not_problems(tiny_model_dir, sample_dir, tmp_path):
    """A record with several problems (broken image and a duplicate of another) is one skipped record."""
    folder = copy_sample(sample_dir, tmp_path)
    bad = break_image(folder, 2)
    records = train_records(folder)
    records = records[:4] + [dict(records[2])]  # record 4 repeats the broken record 2
    text_only_empty = dict(conversations=[{'from': 'human', 'value': '讲一个梗'}, {'from': 'gpt', 'value': ' '}])
    records.append(text_only_empty)
    data = write_records(folder, records)
    ds = InternVL2ConversationDataset(str(tiny_model_dir), str(data), max_length=1024, image_folder=str(folder),
                                      on_bad_record='skip')
    assert [s['image'] for s in ds.samples] == [str(folder / r['image']) for r in records[:4] if r['image'] != bad]
    assert ds.skipped == len(records) - len(ds) == 3


def test_too_long_records_error_or_skip(tiny_model_dir, train_dataset, sample_dir):
    # max_length 600: a 1-tile prompt (256 image tokens) fits, a 3-tile one (768) cannot.
    three = [i for i, s in enumerate(train_dataset.samples) if s['num_tiles'] == 3]
    assert three and len(three) < len(train_dataset)
    data = sample_dir / 'train.json'
    with pytest.raises(BadRecordError, match=re.escape(f'{data}:{three[0]}: would_truncate: the first prompt alone')):
        InternVL2ConversationDataset(str(tiny_model_dir), str(data), max_length=600, image_folder=str(sample_dir))
    ds = InternVL2ConversationDataset(str(tiny_model_dir), str(data), max_length=600, image_folder=str(sample_dir),
                                      on_bad_record='skip')
    assert ds.skipped == len(three) and len(ds) == len(train_dataset) - len(three)
    kept = [s['image'] for i, s in enumerate(train_dataset.samples) if i not in three]
    assert [s['image'] for s in ds.samples] == kept
    assert all(len(s['input_ids']) <= 600 for s in ds.samples)


def test_repeat_times(tiny_model_dir, sample_dir, train_dataset):
    ds = InternVL2ConversationDataset(str(tiny_model_dir), str(sample_dir / 'train.json'), max_length=1024,
                                      image_folder=str(sample_dir), repeat_times=2)
    assert len(ds) == 2 * len(train_dataset) and ds.samples[40]['input_ids'] == ds.samples[0]['input_ids']
    with pytest.raises(ValueError, match='repeat_times must be a whole number'):
        InternVL2ConversationDataset(str(tiny_model_dir), str(sample_dir / 'train.json'), max_length=1024,
                                     image_folder=str(sample_dir), repeat_times=1.5)


def test_collate_pads_masks_and_concatenates_tiles(train_dataset):
    tiles = [s['num_tiles'] for s in train_dataset.samples]
    order = [tiles.index(3), tiles.index(1), tiles[tiles.index(3) + 1:].index(3) + tiles.index(3) + 1]
    items = [train_dataset[i] for i in order]
    lengths = [len(x['input_ids']) for x in items]
    assert len(set(lengths)) > 1  # real padding happens
    batch = internvl2_collate_fn(items, pad_token_id=7)
    assert batch['data_samples'] is None
    data = batch['data']
    width = max(lengths)
    assert data['input_ids'].shape == data['labels'].shape == data['attention_mask'].shape == (3, width)
    for row, (item, n) in enumerate(zip(items, lengths)):
        assert torch.equal(data['input_ids'][row, :n], item['input_ids'])
        assert torch.equal(data['labels'][row, :n], item['labels'])
        assert (data['input_ids'][row, n:] == 7).all() and (data['labels'][row, n:] == IGNORE).all()
        assert data['attention_mask'][row].tolist() == [True] * n + [False] * (width - n)
    assert torch.equal(data['pixel_values'], torch.cat([x['pixel_values'] for x in items]))
    assert data['pixel_values'].shape[0] == 3 + 1 + 3
    assert data['image_flags'].tolist() == [1] * 7
    # Image tokens in the batch match the tiles handed to the model.
    n_img = int((data['input_ids'] == context_id(train_dataset)).sum())
    assert n_img == data['pixel_values'].shape[0] * 256


def test_collate_text_only_batch_has_no_pixels(tiny_model_dir, sample_dir, tmp_path):
    text = [dict(conversations=[{'from': 'human', 'value': f'讲第{i}个梗'}, {'from': 'gpt', 'value': '好。' * (i + 1)}])
            for i in range(2)]
    ds = InternVL2ConversationDataset(str(tiny_model_dir), str(write_records(tmp_path, text)), max_length=256)
    data = internvl2_collate_fn([ds[0], ds[1]])['data']
    assert 'pixel_values' not in data and 'image_flags' not in data
    assert data['attention_mask'].sum(1).tolist() == [len(ds.samples[0]['input_ids']), len(ds.samples[1]['input_ids'])]


def test_truncated_samples_are_counted(tiny_model_dir, train_dataset, sample_dir):
    # 1-tile samples are about 445-460 tokens in full: at max_length 450 some lose answer tokens (the
    # 3-tile ones cannot fit and are skipped). Count them from the untruncated dataset.
    ds = InternVL2ConversationDataset(str(tiny_model_dir), str(sample_dir / 'train.json'), max_length=450,
                                      image_folder=str(sample_dir), on_bad_record='skip')
    full = {s['image']: len(s['input_ids']) for s in train_dataset.samples}
    expected = sum(full[s['image']] > 450 for s in ds.samples)
    assert 0 < expected < len(ds) and ds.truncated == expected
    assert train_dataset.truncated == 0


def test_unparsable_rows_error_with_summary_or_skip_with_count(tiny_model_dir, sample_dir, tmp_path):
    records = json.loads((sample_dir / 'train.json').read_text(encoding='utf-8'))[:3]
    data = tmp_path / 'with_junk.json'
    data.write_text(json.dumps([records[0], 42, records[1], records[2]], ensure_ascii=False), encoding='utf-8')
    with pytest.raises(BadRecordError) as error:
        InternVL2ConversationDataset(str(tiny_model_dir), str(data), max_length=1024, image_folder=str(sample_dir))
    assert 'checked 4 records: 3 usable, 1 with problems' in str(error.value)
    assert f'{data}:1: ' in str(error.value)
    ds = InternVL2ConversationDataset(str(tiny_model_dir), str(data), max_length=1024, image_folder=str(sample_dir),
                                      on_bad_record='skip')
    assert ds.skipped == 1 and len(ds) == 3
