"""The preflight token count (the processor's count_tokens) is exactly what training encodes."""
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from xtuner_ext.data.internvl2_dataset import InternVL2ConversationDataset
from xtuner_ext.data.loaders import load_any
from xtuner_ext.models.internvl2 import InternVL2Processor


@pytest.fixture(scope='module')
def model_with_system_message(tiny_model_dir, tmp_path_factory):
    """The tiny model with its own system message in config.json (training uses it)."""
    folder = Path(shutil.copytree(tiny_model_dir, tmp_path_factory.mktemp('sys') / 'model'))
    config = json.loads((folder / 'config.json').read_text(encoding='utf-8'))
    config['system_message'] = '你是一个会讲笑话的助手，回答要短。'
    (folder / 'config.json').write_text(json.dumps(config, ensure_ascii=False), encoding='utf-8')
    return folder


def test_budget_total_equals_training_length(tiny_model_dir, sample_dir, train_dataset):
    check_budget(tiny_model_dir, sample_dir, train_dataset)


def test_budget_uses_the_model_system_message(model_with_system_message, sample_dir, train_dataset):
    dataset = InternVL2ConversationDataset(str(model_with_system_message), str(sample_dir / 'train.json'),
                                           max_length=1024, image_folder=str(sample_dir))
    assert len(dataset.samples[0]['input_ids']) != len(train_dataset.samples[0]['input_ids'])
    check_budget(model_with_system_message, sample_dir, dataset)


def check_budget(model_dir, sample_dir, train_dataset):
    budget = InternVL2Processor.from_pretrained(model_dir)
    loaded = load_any(str(sample_dir / 'train.json'), str(sample_dir), 'auto')
    assert len(loaded.records) == len(train_dataset)
    for record, sample in zip(loaded.records, train_dataset.samples):
        with Image.open(sample['image']) as image:
            tiles, image_tokens, text_tokens = budget.count_tokens(record, image.size)
        assert tiles == sample['num_tiles']
        assert image_tokens == tiles * budget.num_image_token
        assert image_tokens + text_tokens == len(sample['input_ids'])


def test_budget_multi_turn_and_text_only(tiny_model_dir, tmp_path):
    records = [dict(conversations=[{'from': 'human', 'value': '讲一个梗'}, {'from': 'gpt', 'value': '好的。'},
                                   {'from': 'human', 'value': '再来一个，要更好笑'},
                                   {'from': 'gpt', 'value': '程序员看到这段代码，默默地关上了电脑。'}])]
    (tmp_path / 'd.json').write_text(json.dumps(records, ensure_ascii=False), encoding='utf-8')
    ds = InternVL2ConversationDataset(str(tiny_model_dir), str(tmp_path / 'd.json'), max_length=512)
    assert InternVL2Processor.from_pretrained(tiny_model_dir).count_tokens(records[0], None) == (0, 0, len(ds.samples[0]['input_ids']))
