"""Accuracy on known predictions: per category, circular groups, unmatched and corrupt rows."""
import pytest

from xtuner_ext.evaluation.mmbench import CorruptRow, MMBenchRow, read_mmbench_tsv, rotate, score, with_rotations
from xtuner_ext.evaluation.mmbench.compare import comparison_json, render_comparison
from xtuner_ext.evaluation.mmbench.report import render_result


def q(index, answer, category, l2='perception', options=('x', 'y', 'z')):
    return MMBenchRow(index, 'q?', dict(zip('ABC', options)), '', None, answer, category, l2)


def pred(letter, text=None):
    return {'prediction': text or letter or 'junk', 'letter': letter}


ROWS = [q(0, 'A', 'colour'), q(1, 'B', 'colour'), q(2, 'C', 'shape'), q(3, 'A', 'shape', 'reasoning')]


def test_accuracy_overall_and_per_category():
    result = score(ROWS, {0: pred('A'), 1: pred('C'), 2: pred('C'), 3: pred(None, 'no idea')})
    vanilla = result['vanilla']
    assert (vanilla['questions'], vanilla['correct'], vanilla['overall']) == (4, 2, 0.5)
    assert vanilla['category'] == {'colour': 0.5, 'shape': 0.5}
    assert vanilla['l2-category'] == {'perception': pytest.approx(2 / 3), 'reasoning': 0.0}
    assert result['unmatched'] == 1 and result['unmatched_rows'] == [{'index': 3, 'prediction': 'no idea'}]
    assert 'circular' not in result


def test_unanswered_and_corrupt_rows_are_counted_not_scored():
    corrupt = [CorruptRow(9, 11, 'bad base64')]
    result = score(ROWS, {0: pred('A'), 1: pred('B')}, corrupt)
    assert (result['rows'], result['answered'], result['unanswered'], result['corrupt']) == (5, 2, 2, 1)
    assert result['vanilla']['overall'] == 1.0
    assert result['corrupt_rows'] == [{'index': 9, 'line': 11, 'reason': 'bad base64'}]
    assert 'corrupt: line 11 (index 9): bad base64' in render_result('x', result)


def test_circular_needs_every_rotation_right():
    rows = with_rotations(ROWS[:2])  # two questions x three rotations
    assert sorted(r.index for r in rows) == [0, 1, 1_000_000, 1_000_001, 2_000_000, 2_000_001]
    right = {r.index: pred(r.answer) for r in rows}
    right[2_000_001] = pred('A' if rows[-1].answer != 'A' else 'B')  # question 1 fails one rotation
    result = score(rows, right)
    assert result['vanilla']['overall'] == 1.0  # main rows are all right
    assert result['circular']['overall'] == 0.5 and result['circular']['category'] == {'colour': 0.5}


def test_rotation_moves_texts_and_answer_together():
    row = q(7, 'B', 'colour')
    for shift in (1, 2):
        turned = rotate(row, shift)
        assert turned.index == 7 + shift * 1_000_000
        assert turned.options[turned.answer] == 'y' and sorted(turned.options.values()) == ['x', 'y', 'z']
    assert rotate(row, 1).options == {'A': 'y', 'B': 'z', 'C': 'x'}


def test_files_with_copies_get_no_extra_rotations(circular_tsv):
    rows = read_mmbench_tsv(circular_tsv).rows
    assert len(with_rotations(rows)) == len(rows)


def test_test_split_has_counts_but_no_accuracy():
    rows = [MMBenchRow(0, 'q?', {'A': 'x', 'B': 'y'}, '', None, None, 'c', None)]
    result = score(rows, {0: pred('A')})
    assert 'vanilla' not in result and result['answered'] == 1
    assert 'submit the .xlsx' in render_result('MMBench_TEST_EN', result)


def test_before_after_table_has_one_delta_per_category():
    before = score(ROWS, {0: pred('A'), 1: pred('B'), 2: pred('A'), 3: pred('A')})
    after = score(ROWS, {0: pred('A'), 1: pred('A'), 2: pred('C'), 3: pred('A')})
    lines = {row['label']: row for row in comparison_json(before, after)}
    assert lines['vanilla overall']['delta'] == 0.0
    assert lines['category: colour']['delta'] == pytest.approx(-0.5)
    assert lines['category: shape']['delta'] == pytest.approx(0.5)
    table = render_comparison(before, after)
    assert 'category: colour' in table and '-50.0' in table and '+50.0' in table


def test_report_lists_a_few_unmatched_and_points_to_the_rest():
    rows = [q(i, 'A', 'colour') for i in range(8)]
    text = render_result('x', score(rows, {i: pred(None, f'junk {i}') for i in range(8)}))
    assert "unmatched: index 4: 'junk 4'" in text and 'index 5' not in text
    assert 'unmatched: ... and 3 more in result.json' in text and '8 unmatched' in text
