"""The LLaVA tutorial on tiny models (CPU, minutes): stage 1 (projector) and stage 2 (LLM LoRA + CLIP
LoRA from stage 1's checkpoint) through stock `xtuner train`, stock `xtuner convert pth_to_hf`, our
llava-hf export, and transformers' own LlavaForConditionalGeneration answering like the trained model."""
import os
import sys
from pathlib import Path

import pytest

from e2e_helpers import before_after_report, run

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PRETRAIN = REPO / 'configs' / 'llava' / 'llava_internlm2_tiny_clip_tiny_pretrain.py'
FINETUNE = REPO / 'configs' / 'llava' / 'llava_internlm2_tiny_clip_tiny_qlora_lora_finetune.py'
BIN = Path(sys.executable).parent
QUESTION = 'Describe this image.'


@pytest.fixture(scope='module')
def flow(tmp_path_factory):
    from xtuner_ext.data.llava_sample import make_llava_sample
    from xtuner_ext.models.internlm2 import make_tiny_internlm2
    from xtuner_ext.models.llava import make_tiny_clip

    root = tmp_path_factory.mktemp('llava_flow')
    data = make_llava_sample(root / 'llava_data')
    run([sys.executable, REPO / 'tools' / 'repeat_data.py', '-i', data / 'unique_data.json',
         '-o', data / 'repeated_data.json', '-n', '20'], dict(os.environ), root)  # 40 records: 10 iterations
    env = dict(os.environ, XTUNER_EXT_MODEL_PATH=str(make_tiny_internlm2(root / 'internlm2_tiny')),
               XTUNER_EXT_CLIP_PATH=str(make_tiny_clip(root / 'clip_tiny')), XTUNER_EXT_DATA_ROOT=str(data),
               XTUNER_EXT_PRETRAINED_PTH=str(root / 'pretrain' / 'iter_10.pth'))
    run([BIN / 'xtuner', 'train', PRETRAIN, '--work-dir', root / 'pretrain'], env, root)
    assert (root / 'pretrain' / 'iter_10.pth').is_file()
    run([BIN / 'xtuner', 'train', FINETUNE, '--work-dir', root / 'finetune'], env, root)
    checkpoint = root / 'finetune' / 'iter_10.pth'
    assert checkpoint.is_file()
    run([BIN / 'xtuner', 'convert', 'pth_to_hf', FINETUNE, checkpoint, root / 'xtuner_hf'], env, root)
    run([sys.executable, '-m', 'xtuner_ext.cli', 'llava', 'export', FINETUNE, checkpoint, root / 'llava_hf'], env, root)
    return root, env, checkpoint, data / 'test_img' / 'oph.png'


def test_stock_pth_to_hf_writes_the_xtuner_llava_layout(flow):
    root = flow[0]
    assert {p.name for p in (root / 'xtuner_hf').iterdir()} >= {'llm_adapter', 'visual_encoder_adapter', 'projector'}


@pytest.mark.parametrize('stage', ['pretrain', 'finetune'])
def test_before_after_report_of_each_stage(flow, stage):
    """The configs' BeforeAfterChatHook on stock LLaVAModel: the sample's two questions about its image
    and the first two training records, answered before and after; the fine-tune learned the records."""
    root = flow[0]
    metrics = before_after_report(root / stage, {'input:0', 'input:1', 'train:4672496731', 'train:123456789'}, 10)
    train = metrics['after']['metrics']['train']
    assert train['choice_accuracy'] is not None and train['copy_rate'] is not None
    if stage == 'finetune':
        assert train['rouge_l'] > metrics['before']['metrics']['train']['rouge_l']


def test_transformers_llava_answers_as_the_trained_model(flow, monkeypatch):
    from mmengine.config import Config
    from transformers import AutoProcessor, LlavaForConditionalGeneration
    from xtuner.registry import BUILDER

    from xtuner_ext.models.llava.chat import llava_chat
    from xtuner_ext.models.llava.cli import hf_chat
    from xtuner_ext.models.llava.export import llava_from_checkpoint

    root, env, checkpoint, image = flow
    for key in ('XTUNER_EXT_MODEL_PATH', 'XTUNER_EXT_CLIP_PATH', 'XTUNER_EXT_DATA_ROOT', 'XTUNER_EXT_PRETRAINED_PTH'):
        monkeypatch.setenv(key, env[key])
    config = Config.fromfile(str(FINETUNE))
    trained = llava_from_checkpoint(str(FINETUNE), str(checkpoint))
    expected = llava_chat(trained, BUILDER.build(config.tokenizer), BUILDER.build(config.image_processor), str(image),
                          QUESTION, max_new_tokens=16)
    model = LlavaForConditionalGeneration.from_pretrained(str(root / 'llava_hf')).eval()
    processor = AutoProcessor.from_pretrained(str(root / 'llava_hf'), use_fast=False)
    assert hf_chat(model, processor, str(image), QUESTION, max_new_tokens=16) == expected
    assert expected.startswith('A patient')  # stage 2 learned the tutorial-style answer


def test_chat_command_answers(flow):
    root, env, _, image = flow
    result = run([sys.executable, '-m', 'xtuner_ext.cli', 'llava', 'chat', root / 'llava_hf', '--image', image,
                  '-q', QUESTION], env, root)
    assert 'A: A patient' in result.stdout
