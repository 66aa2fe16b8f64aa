"""Questions as OpenGVLab/InternVL's evaluate_mmbench.py builds them, and the full chat prompt."""
import json

import pytest

from xtuner_ext.evaluation.mmbench import INSTRUCTIONS, MMBenchRow, build_question, language_of, read_mmbench_tsv

EN = "Answer with the option's letter from the given choices directly."


def row(**fields):
    base = dict(index=0, question='What is drawn?', options={'A': 'a cat', 'B': 'a dog', 'C': 'a bird', 'D': 'a fish'},
                image='', hint=None, answer='A')
    return MMBenchRow(**{**base, **fields})


@pytest.mark.parametrize('fields, language, expected', [
    ({}, 'en', f'What is drawn?\nA. a cat\nB. a dog\nC. a bird\nD. a fish\n{EN}'),
    ({'hint': 'Look at the left.'}, 'en',
     f'Look at the left.\nWhat is drawn?\nA. a cat\nB. a dog\nC. a bird\nD. a fish\n{EN}'),
    ({'options': {'A': 'yes', 'B': 'no'}}, 'en', f'What is drawn?\nA. yes\nB. no\n{EN}'),
    ({'question': '图中是什么？', 'options': {'A': '猫', 'B': '狗'}}, 'cn',
     '图中是什么？\nA. 猫\nB. 狗\n请直接回答选项字母。'),
])
def test_question_text_as_the_official_evaluation(fields, language, expected):
    assert build_question(row(**fields), language) == expected


@pytest.mark.parametrize('name, language', [
    ('MMBench_DEV_EN.tsv', 'en'), ('MMBench_DEV_CN.tsv', 'cn'), ('MMBench_TEST_EN.tsv', 'en'),
    ('MMBench_TEST_CN_V11.tsv', 'cn'), ('mmbench_dev_cn_20231003.tsv', 'cn'), ('mmbench_dev_20230712.tsv', 'en'),
    ('CCBench.tsv', 'cn'), ('CCBench_legacy.tsv', 'cn'), ('scenes.tsv', 'en'),
])
def test_language_follows_the_file(name, language):
    assert language_of(f'data/{name}') == language


def test_unknown_language_is_refused():
    with pytest.raises(ValueError, match="language 'fr' is not one of"):
        build_question(row(), 'fr')
    assert set(INSTRUCTIONS) == {'en', 'cn'}


def test_chat_prompt_is_the_official_template_around_the_question(tiny_model, dev_tsv):
    """The official reference prompt (tests/fixtures/internvl2_tiny/reference.json) with our
    MMBench question in place of its question: system message, <image> tag, roles, separators."""
    from xtuner_ext.evaluation.mmbench.answering import InternVL2Answerer

    reference = json.loads((tiny_model / 'reference.json').read_text(encoding='utf-8'))
    answerer = InternVL2Answerer.from_folder(tiny_model, torch_dtype='float32', dynamic=False)
    question = build_question(read_mmbench_tsv(dev_tsv).rows[0], 'en')
    prompt = answerer.prompt(question, num_tiles=1)
    official_question = reference['question'].split('\n', 1)[1]
    expected = reference['prompt_without_img_context'].replace(official_question, question)
    assert prompt.replace('<IMG_CONTEXT>', '') == expected
    assert prompt.count('<IMG_CONTEXT>') == 256
