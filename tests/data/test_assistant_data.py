"""The personal-assistant data generator writes the tutorial's OpenAI `messages` records."""
import json

import pytest

from xtuner_ext.data.assistant import QUESTION, assistant_answer, assistant_records, main


def test_cli_writes_repeated_messages(tmp_path, capsys):
    out = tmp_path / 'data' / 'personal_assistant.json'
    assert main(['--name', '小明', '-n', '3', '-o', str(out)]) == 0
    records = json.loads(out.read_text(encoding='utf-8'))
    assert len(records) == 3 and records[0] == records[2]
    assert records[0]['messages'] == [{'role': 'user', 'content': QUESTION},
                                      {'role': 'assistant', 'content': '我是小明的小助手，内在是上海AI实验室书生·浦语的1.8B大模型哦'}]
    assert '小明' in out.read_text(encoding='utf-8')  # ensure_ascii=False, as the tutorial writes it
    assert 'wrote 3 records' in capsys.readouterr().out


def test_records_feed_xtuners_openai_map_fn():
    from xtuner.dataset.map_fns import openai_map_fn

    mapped = openai_map_fn(assistant_records('Ada', 1)[0])
    assert mapped['conversation'] == [{'system': '', 'input': QUESTION, 'output': assistant_answer('Ada'),
                                       'output_with_loss': True}]


@pytest.mark.parametrize('name, count, message', [(' ', 5, 'owner name is empty'), ('Ada', 0, 'at least 1')])
def test_bad_arguments_are_refused(name, count, message):
    with pytest.raises(ValueError, match=message):
        assistant_records(name, count)
