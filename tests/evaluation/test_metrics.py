"""Each before/after metric on hand-made cases whose values are worked out by hand."""
import math

import pytest

from xtuner_ext.evaluation.metrics import (char_rouge_l, choice_accuracy, choice_correct, copy_rate, corpus_bleu,
                                           distinct_n, mean_char_rouge_l, mean_length, stage_metrics)


@pytest.mark.parametrize('hyp, ref, expected', [
    ('今天天气很好', '今天天气很好', 1.0),
    ('猫坐在窗台', '狗跑过草地', 0.0),
    # LCS('ABCD', 'ACBD') = 3: P = R = 3/4
    ('ABCD', 'ACBD', 0.75),
    # LCS('太阳上班', '太阳每天上班了') = 4: P = 4/4, R = 4/7 -> F1 = 2 * 4/7 / (1 + 4/7) = 8/11
    ('太阳上班', '太阳每天上班了', 8 / 11),
    ('太 阳', '太阳', 1.0),  # whitespace does not count
    ('', '太阳', 0.0),
])
def test_char_rouge_l(hyp, ref, expected):
    assert char_rouge_l(hyp, ref) == pytest.approx(expected)


def test_mean_char_rouge_l():
    assert mean_char_rouge_l(['ABCD', '猫'], ['ACBD', '狗']) == pytest.approx(0.375)
    assert mean_char_rouge_l([], []) is None


def test_bleu_uses_character_tokens_for_chinese():
    assert corpus_bleu(['今天天气很好'], ['今天天气很好']) == pytest.approx(100.0)
    assert corpus_bleu(['猫猫猫猫'], ['狗狗狗狗']) == pytest.approx(0.0)
    # 6 chars vs a 6-char reference sharing 1-grams 5/6, 2-grams 4/5, 3-grams 3/4, 4-grams 2/3, same length
    expected = 100 * math.exp((math.log(5 / 6) + math.log(4 / 5) + math.log(3 / 4) + math.log(2 / 3)) / 4)
    assert corpus_bleu(['今天天气很坏'], ['今天天气很好']) == pytest.approx(expected, abs=1e-6)
    assert corpus_bleu([], []) is None


def test_distinct_n():
    # '哈哈哈' + '哈哈笑': 1-grams 哈x5 笑x1 -> 2/6; 2-grams 哈哈,哈哈 | 哈哈,哈笑 -> 2/4
    assert distinct_n(['哈哈哈', '哈哈笑'], 1) == pytest.approx(2 / 6)
    assert distinct_n(['哈哈哈', '哈哈笑'], 2) == pytest.approx(2 / 4)
    assert distinct_n(['猫', ''], 2) is None


def test_mean_length_counts_characters():
    assert mean_length(['太阳', '月亮很圆', ' a b ']) == pytest.approx((2 + 4 + 2) / 3)
    assert mean_length([]) is None


def test_copy_rate_counts_equal_and_nearly_equal_answers():
    training = ['这个太阳已经连续加班四十亿年了，还没拿到过一次年假。', '防晒霜的销售冠军，本人。']
    answers = ['防晒霜的销售冠军，本人。',  # equal
               '这个太阳已经连续加班四十亿年了，还没拿到过一次年假',  # one character short: nearly equal
               '月亮今天请假了。']  # new
    assert copy_rate(answers, training) == pytest.approx(2 / 3)
    assert copy_rate(answers, []) is None


def test_choice_accuracy_needs_the_own_reference_strictly_highest():
    assert choice_correct([-1.0, -2.0, -3.0])
    assert not choice_correct([-2.0, -1.0, -3.0])
    assert not choice_correct([-1.0, -1.0])  # a tie is not knowing
    assert choice_accuracy([[-1.0, -2.0], [-3.0, -2.0], [-0.5, -0.7, -0.9], None]) == pytest.approx(2 / 3)
    assert choice_accuracy([None, [-1.0]]) is None


def test_stage_metrics_use_only_items_with_a_reference_for_overlap():
    metrics = stage_metrics(['猫', '自由回答'], ['猫', None], ['猫'], [[-1.0, -2.0], None])
    assert metrics['rouge_l'] == 1.0
    assert metrics['mean_length'] == pytest.approx(2.5)
    assert metrics['copy_rate'] == pytest.approx(0.5)
    assert metrics['choice_accuracy'] == 1.0
