"""The submission .xlsx layout and the resumable predictions.jsonl."""
import json

import openpyxl
import pytest

from xtuner_ext.evaluation.mmbench import read_mmbench_tsv
from xtuner_ext.evaluation.mmbench.writing import PredictionLog, write_submission


def _sheet(path):
    rows = list(openpyxl.load_workbook(path).active.iter_rows(values_only=True))
    return list(rows[0]), [dict(zip(rows[0], r)) for r in rows[1:]]


def test_test_split_xlsx_is_the_mmbench_submission_layout(tmp_path, test_split_tsv):
    table = read_mmbench_tsv(test_split_tsv)
    predictions = {0: {'prediction': 'B. cross', 'letter': 'B'}, 2: {'prediction': 'no idea', 'letter': None}}
    write_submission(tmp_path / 'sub.xlsx', table, table.rows, predictions)
    header, rows = _sheet(tmp_path / 'sub.xlsx')
    # OpenGVLab/InternVL: drop hint, category, source, image, comment, l2-category; prediction after the options
    assert header == ['index', 'question', 'A', 'B', 'C', 'D', 'prediction', 'split']
    assert [(r['index'], r['prediction']) for r in rows] == [(0, 'B'), (2, 'no idea')]
    assert rows[0]['question'] == table.rows[0].question and rows[0]['split'] == 'test'
    assert rows[1]['C'] is None  # a counting question: options C and D are empty


def test_dev_xlsx_keeps_the_answer_column(tmp_path, dev_tsv):
    table = read_mmbench_tsv(dev_tsv)
    write_submission(tmp_path / 'dev.xlsx', table, table.rows, {r.index: {'prediction': 'A', 'letter': 'A'}
                                                                for r in table.rows})
    header, rows = _sheet(tmp_path / 'dev.xlsx')
    assert header == ['index', 'question', 'A', 'B', 'C', 'D', 'prediction', 'answer', 'split']
    assert [r['answer'] for r in rows] == [r.answer for r in table.rows]


def test_prediction_log_appends_and_drops_a_torn_last_line(tmp_path):
    log = PredictionLog(tmp_path / 'predictions.jsonl')
    assert log.load() == {}
    log.append({'index': 3, 'prediction': 'A', 'letter': 'A'})
    log.append({'index': 1_000_003, 'prediction': '选B', 'letter': 'B'})
    with open(log.path, 'a', encoding='utf-8') as f:
        f.write('{"index": 4, "predic')  # a kill in the middle of a write
    assert sorted(log.load()) == [3, 1_000_003]
    assert log.path.read_text(encoding='utf-8').splitlines()[-1] == json.dumps(
        {'index': 1_000_003, 'prediction': '选B', 'letter': 'B'}, ensure_ascii=False)


def test_prediction_log_refuses_a_broken_middle_line(tmp_path):
    path = tmp_path / 'predictions.jsonl'
    path.write_text('{"index": 1, "letter": "A"}\nbroken\n{"index": 2, "letter": "B"}\n', encoding='utf-8')
    with pytest.raises(ValueError, match=r'predictions.jsonl:2 is not JSON; delete the file to start over'):
        PredictionLog(path).load()
