"""``xtuner-ext mmbench`` for XTuner's LLaVA models on a tiny LLaVA (InternLM2 + CLIP, random LoRA and
projector standing in for training): the prompt as stock ``xtuner mmbench`` builds it, a llava-hf
folder and a config + ``iter_N.pth`` answering alike, predictions, accuracy and before/after written."""
import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from xtuner_ext.evaluation.mmbench import MMBenchRow, read_mmbench_tsv
from xtuner_ext.evaluation.mmbench.cli import main
from xtuner_ext.evaluation.mmbench.llava_answering import build_llava_question
from xtuner_ext.evaluation.mmbench.sample import make_mmbench_sample

REPO = Path(__file__).resolve().parents[2]
FINETUNE = REPO / 'configs' / 'llava' / 'llava_internlm2_tiny_clip_tiny_qlora_lora_finetune.py'
EN = "Answer with the option's letter from the given choices directly."
QUICK = ['--max-new-tokens', '4', '--device', 'cpu', '--no-progress']


def row(**fields):
    base = dict(index=0, question='What is drawn?', options={'A': 'a cat', 'B': 'a dog', 'C': 'a bird', 'D': 'a fish'},
                image='', hint=None, answer='A')
    return MMBenchRow(**{**base, **fields})


@pytest.mark.parametrize('fields, language, expected', [
    ({}, 'en', f'What is drawn?\nA. a cat\nB. a dog\nC. a bird\nD. a fish\n{EN}'),
    ({'hint': 'Look at the left.'}, 'en', f'Look at the left.\nWhat is drawn?\nA. a cat\nB. a dog\nC. a bird\nD. a fish\n{EN}'),
    ({'options': {'A': 'yes', 'B': 'no'}}, 'en', f'What is drawn?\nA. yes\nB. no\n{EN}'),
    ({'question': '图中是什么？', 'options': {'A': '猫', 'B': '狗'}}, 'cn', '图中是什么？\nA. 猫\nB. 狗\n请直接回答选项字母。'),
])
def test_question_text_as_xtuner_mmbench(fields, language, expected):
    """Unlike the InternVL evaluation, every option line ends with a newline and the instruction follows."""
    assert build_llava_question(row(**fields), language) == expected


def xtuner_reference_prompt(sample: dict) -> str:
    """``xtuner/tools/mmbench.py``'s main loop for one dataset item, with ``--prompt-template internlm2_chat``."""
    from xtuner.tools.utils import is_cn_string
    from xtuner.utils import DEFAULT_IMAGE_TOKEN, PROMPT_TEMPLATE

    text = sample['question'] + '\n' + sample['options']
    if sample['context'] is not None:
        text = sample['context'] + '\n' + text
    text = DEFAULT_IMAGE_TOKEN + '\n' + text
    text += '请直接回答选项字母。' if is_cn_string(text) else "Answer with the option's letter from the given choices directly."
    return PROMPT_TEMPLATE['internlm2_chat']['INSTRUCTION'].format(input=text, round=1, bot_name='BOT')


def xtuner_reference_ids(tokenizer, prompt: str) -> list:
    """The same loop's ids: ``tokenizer.encode`` of the part before ``<image>``, the image index, the rest."""
    from xtuner.utils import DEFAULT_IMAGE_TOKEN, IMAGE_TOKEN_INDEX

    before, after = prompt.split(DEFAULT_IMAGE_TOKEN)
    return tokenizer.encode(before) + [IMAGE_TOKEN_INDEX] + tokenizer.encode(after, add_special_tokens=False)


@pytest.mark.parametrize('language', ['en', 'cn'])
def test_prompt_and_ids_are_xtuner_mmbench_s_on_the_generated_tsv(language, tmp_path):
    """Every row of the generated TSV, read by XTuner's own ``MMBenchDataset``: same prompt, same ids
    (real InternLM2 tokenizer)."""
    from xtuner.tools.mmbench import MMBenchDataset

    from xtuner_ext.models.internlm2 import internlm2_tokenizer
    from xtuner_ext.models.internlm2.chat import build_prompt
    from xtuner_ext.models.llava.chat import prompt_ids

    tsv = make_mmbench_sample(tmp_path / f'MMBench_DEV_{language.upper()}.tsv', language=language)
    reference, rows = MMBenchDataset(str(tsv)), read_mmbench_tsv(tsv).rows
    tokenizer = internlm2_tokenizer(str(REPO / 'tests' / 'fixtures' / 'internlm2_tokenizer'))
    assert len(rows) == len(reference) == 12 and any(r.hint for r in rows) and any(len(r.options) == 2 for r in rows)
    for position, ours in enumerate(rows):
        expected = xtuner_reference_prompt(reference[position])
        question = build_llava_question(ours, language)
        assert build_prompt('<image>\n' + question) == expected, ours.index
        assert prompt_ids(tokenizer, question) == xtuner_reference_ids(tokenizer, expected), ours.index


# ---- real runs on a tiny LLaVA ----
@pytest.fixture(scope='module')
def llava(tmp_path_factory):
    """(llava-hf folder, config, iter_1.pth, env): one 'trained' tiny LLaVA, both ways."""
    from mmengine.config import Config
    from xtuner.registry import BUILDER

    import xtuner_ext  # noqa: F401  (registries, boot patches)
    from xtuner_ext.models.internlm2 import make_tiny_internlm2
    from xtuner_ext.models.llava import make_tiny_clip
    from xtuner_ext.models.llava.export import export_llava_hf

    root = tmp_path_factory.mktemp('llava_mmbench')
    env = dict(XTUNER_EXT_MODEL_PATH=str(make_tiny_internlm2(root / 'internlm2_tiny')),
               XTUNER_EXT_CLIP_PATH=str(make_tiny_clip(root / 'clip_tiny')))
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        config = Config.fromfile(str(FINETUNE))
    config.model.pretrained_pth, config.model.llm.quantization = None, None
    model = BUILDER.build(config.model)
    generator = torch.Generator().manual_seed(0)
    for name, param in model.named_parameters():
        if '.lora_B.' in name or name.startswith('projector.'):  # stand-in for training
            param.data = 0.3 * torch.randn(param.shape, generator=generator)
    torch.save({'meta': {}, 'state_dict': model.state_dict()}, root / 'iter_1.pth')  # what xtuner train saves
    hf = export_llava_hf(model.eval(), BUILDER.build(config.tokenizer), BUILDER.build(config.image_processor),
                         root / 'llava_hf')
    return hf, root / 'iter_1.pth', env


@pytest.fixture
def llava_env(llava, monkeypatch):
    for key, value in llava[2].items():
        monkeypatch.setenv(key, value)
    return llava


def records(path):
    return [json.loads(line) for line in path.read_text(encoding='utf-8').splitlines()]


def test_hf_folder_and_config_checkpoint_answer_alike_before_after(llava_env, dev_tsv, tmp_path, capsys):
    hf, checkpoint, _ = llava_env
    assert main([str(hf), '--compare', str(FINETUNE), '--compare-checkpoint', str(checkpoint), '--data-path',
                 str(dev_tsv), '--work-dir', str(tmp_path), *QUICK, '--limit', '4']) == 0
    base, tuned = records(tmp_path / 'base' / 'predictions.jsonl'), records(tmp_path / 'finetuned' / 'predictions.jsonl')
    rows = read_mmbench_tsv(dev_tsv).rows[:4]
    assert [r['question'] for r in base] == [build_llava_question(row, 'en') for row in rows]
    assert [r['prediction'] for r in base] == [r['prediction'] for r in tuned]  # one model, held two ways
    assert all(r['prediction'] for r in base)
    assert all(d['delta'] == 0.0 for d in json.loads((tmp_path / 'compare.json').read_text()))
    result = json.loads((tmp_path / 'base' / 'result.json').read_text())
    assert result['answered'] == 4 and result['unmatched'] == sum(r['letter'] is None for r in base)
    assert result['vanilla']['overall'] == sum(r['letter'] == r['answer'] for r in base) / 4
    assert list(pd.read_excel(tmp_path / 'base' / 'MMBench_DEV_EN_sample.xlsx')['index']) == [0, 1, 2, 3]
    settings = json.loads((tmp_path / 'finetuned' / 'run.json').read_text())
    assert settings['model'].endswith('iter_1.pth') and settings['prompt'].startswith('xtuner mmbench')
    assert 'before/after on MMBench_DEV_EN_sample' in capsys.readouterr().out


def test_hf_answer_is_the_models_greedy_continuation_of_the_xtuner_prompt(llava):
    """The llava-hf ids are XTuner's with ``<image>`` expanded to the vision tokens; the answer is
    plain greedy decoding of them."""
    from transformers import AutoTokenizer

    from xtuner_ext.evaluation.mmbench.llava_answering import LLaVAHFAnswerer
    from xtuner_ext.models.internlm2.chat import build_prompt

    hf = llava[0]
    answerer = LLaVAHFAnswerer(hf, max_new_tokens=5)
    question = build_llava_question(row(hint='Look.'), 'en')
    image = make_mmbench_sample_image()
    inputs = answerer.inputs(image, question)
    ids, image_id = inputs['input_ids'][0].tolist(), answerer.model.config.image_token_index
    collapsed = [i for n, i in enumerate(ids) if i != image_id or ids[n - 1] != image_id]
    tokenizer = AutoTokenizer.from_pretrained(str(hf), use_fast=False)
    reference = xtuner_reference_ids(tokenizer, build_prompt('<image>\n' + question))
    assert collapsed == [image_id if i == -200 else i for i in reference]
    assert ids.count(image_id) == 4  # tiny CLIP: 28 px / 14 = 2 x 2 patches, CLS dropped
    from xtuner.dataset.utils import expand2square  # XTuner's padding, as its mmbench applies it

    processor = answerer.processor.image_processor
    padded = expand2square(image, tuple(int(x * 255) for x in processor.image_mean))
    assert torch.equal(inputs['pixel_values'], processor.preprocess(padded, return_tensors='pt')['pixel_values'])
    assert answerer.answer(image, question) != ''


def make_mmbench_sample_image():
    """A wide picture: the square padding matters."""
    from PIL import Image

    return Image.new('RGB', (90, 40), (200, 30, 30))


def test_a_llava_config_without_its_checkpoint_says_what_to_pass(llava_env, dev_tsv, tmp_path, capsys):
    assert main([str(FINETUNE), '--data-path', str(dev_tsv), '--work-dir', str(tmp_path)]) == 1
    assert 'also pass its trained weights, e.g. --checkpoint' in capsys.readouterr().err


@pytest.mark.parametrize('config, is_llava', [
    ('configs/llava/llava_internlm2_tiny_clip_tiny_qlora_lora_finetune.py', True),
    ('configs/llava/llava_internlm2_chat_1_8b_qlora_clip_vit_large_p14_336_lora_finetune.py', True),
    ('configs/internvl/internvl2_tiny_qlora.py', False),
])
def test_config_family_is_recognised(config, is_llava):
    from mmengine.config import Config

    from xtuner_ext.evaluation.mmbench.llava_answering import is_llava_config

    assert is_llava_config(Config.fromfile(str(REPO / config))) is is_llava


def test_stage_1_against_stage_2_before_after(llava_env, dev_tsv, tmp_path):
    """The LLaVA tutorial's before/after: the pretrain (projector-only) config + its checkpoint against
    the fine-tune; the pretrain checkpoint holds only the projector."""
    from mmengine.config import Config
    from xtuner.registry import BUILDER

    pretrain = REPO / 'configs' / 'llava' / 'llava_internlm2_tiny_clip_tiny_pretrain.py'
    config = Config.fromfile(str(pretrain))
    config.model.llm.quantization = None
    model = BUILDER.build(config.model)
    assert {k.split('.')[0] for k in model.state_dict()} == {'projector'}
    torch.save({'meta': {}, 'state_dict': model.state_dict()}, tmp_path / 'iter_10.pth')
    assert main([str(pretrain), '--checkpoint', str(tmp_path / 'iter_10.pth'), '--compare', str(FINETUNE),
                 '--compare-checkpoint', str(llava_env[1]), '--data-path', str(dev_tsv), '--work-dir',
                 str(tmp_path / 'run'), *QUICK, '--limit', '2']) == 0
    before = records(tmp_path / 'run' / 'base' / 'predictions.jsonl')
    after = records(tmp_path / 'run' / 'finetuned' / 'predictions.jsonl')
    assert [r['prediction'] for r in before] != [r['prediction'] for r in after]
    assert json.loads((tmp_path / 'run' / 'compare.json').read_text())[0]['label'] == 'vanilla overall'
