"""The personal-assistant tutorial, start to finish on a tiny InternLM2 (CPU, minutes): stock
`xtuner train` with native InternLM2 (no remote code), stock `xtuner convert pth_to_hf`, our merge
to the official layout, a strict reload, and a greedy chat that knows the owner's name."""
import json
import os
import sys
from pathlib import Path

import pytest
import torch

from e2e_helpers import before_after_report, run

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / 'configs' / 'internlm2' / 'internlm2_tiny_qlora_assistant.py'
BIN = Path(sys.executable).parent
NAME = '小明'


@pytest.fixture(scope='module')
def flow(tmp_path_factory):
    from xtuner_ext.data.assistant import write_assistant_data
    from xtuner_ext.models.internlm2 import make_tiny_internlm2

    root = tmp_path_factory.mktemp('assistant')
    base = make_tiny_internlm2(root / 'internlm2_tiny', seed=0)
    write_assistant_data(str(root / 'data' / 'personal_assistant.json'), NAME, count=200)
    env = dict(os.environ, XTUNER_EXT_MODEL_PATH=str(base), XTUNER_EXT_DATA_ROOT=str(root / 'data'))
    train = run([BIN / 'xtuner', 'train', CONFIG, '--work-dir', root / 'work'], env, root)
    checkpoint = root / 'work' / 'iter_64.pth'  # 200 records packed into 256-token samples: 64 iterations
    assert checkpoint.is_file(), train.stdout[-3000:] + train.stderr[-3000:]
    run([BIN / 'xtuner', 'convert', 'pth_to_hf', CONFIG, checkpoint, root / 'adapter'], env, root)
    run([sys.executable, '-m', 'xtuner_ext.cli', 'internlm2', 'merge', base, root / 'adapter', root / 'merged'],
        env, root)
    return base, root


def test_stock_pth_to_hf_writes_an_adapter(flow):
    _, root = flow
    assert (root / 'adapter' / 'adapter_config.json').is_file()


def test_before_after_report_shows_the_owner_learned(flow):
    """The config's BeforeAfterChatHook on stock SupervisedFinetune: the tutorial's questions and the
    training record, answered before and after; after, the training answer is reproduced."""
    from xtuner_ext.data.assistant import assistant_answer

    _, root = flow
    metrics = before_after_report(root / 'work', {'input': 3, 'train': 1}, 64)
    assert metrics['after']['metrics']['train']['copy_rate'] == 1.0 > metrics['before']['metrics']['train']['copy_rate']
    rows = [json.loads(line) for line in (root / 'work' / 'before_after.jsonl').read_text(encoding='utf-8').splitlines()]
    assert [r['answer'] for r in rows if r['stage'] == 'after' and r['split'] == 'train'] == [assistant_answer(NAME)]


def test_merged_model_reloads_strictly_and_knows_its_owner(flow):
    from xtuner_ext.data.assistant import QUESTION, assistant_answer
    from xtuner_ext.models.internlm2 import internlm2_tokenizer, load_internlm2
    from xtuner_ext.models.internlm2.chat import chat
    from xtuner_ext.models.internlm2.merge import merged_internlm2

    base, root = flow
    reloaded = load_internlm2(root / 'merged', torch_dtype='float32')  # strict
    in_memory = merged_internlm2(base, root / 'adapter').to(torch.bfloat16).float()  # as saved: bf16
    tokenizer = internlm2_tokenizer(str(root / 'merged'))
    answer = chat(reloaded, tokenizer, QUESTION)
    assert answer == chat(in_memory, tokenizer, QUESTION)
    assert answer == assistant_answer(NAME)
    assert chat(load_internlm2(base, torch_dtype='float32'), tokenizer, QUESTION) != answer  # training did it


def test_chat_command_answers(flow):
    _, root = flow
    result = run([sys.executable, '-m', 'xtuner_ext.cli', 'internlm2', 'chat', root / 'merged', '-q', '请做一下自我介绍'],
                 dict(os.environ), root)
    assert f'A: 我是{NAME}的小助手' in result.stdout
