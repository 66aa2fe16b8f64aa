"""Reading the official TSV layout: options, hints, image references, test files, corrupt rows."""
import base64

import pandas as pd
import pytest

from xtuner_ext.evaluation.mmbench import read_mmbench_tsv
from xtuner_ext.evaluation.mmbench.sample import make_mmbench_sample


def _rewrite(src, dst, edit):
    frame = pd.read_csv(src, sep='\t', dtype=str, keep_default_na=False)
    edit(frame)
    frame.to_csv(dst, sep='\t', index=False)
    return dst


def test_sample_reads_back_in_the_official_layout(dev_tsv):
    table = read_mmbench_tsv(dev_tsv)
    assert table.split == 'dev' and table.corrupt == [] and len(table.rows) == 12
    assert table.columns[:8] == ['index', 'question', 'hint', 'A', 'B', 'C', 'D', 'answer']
    counting = [r for r in table.rows if r.category == 'counting']
    assert counting and all(list(r.options) == ['A', 'B'] for r in counting)  # C and D empty
    assert {r.l2_category for r in table.rows} == {'coarse_perception', 'fine-grained_perception'}
    assert sum(r.hint is not None for r in table.rows) == 4
    assert all(r.answer in r.options for r in table.rows)
    assert table.rows[0].decode_image().mode == 'RGB'


def test_sample_is_deterministic(tmp_path):
    a = make_mmbench_sample(tmp_path / 'a.tsv', seed=3)
    b = make_mmbench_sample(tmp_path / 'b.tsv', seed=3)
    c = make_mmbench_sample(tmp_path / 'c.tsv', seed=4)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()


def test_test_split_has_no_answers(test_split_tsv):
    table = read_mmbench_tsv(test_split_tsv)
    assert table.split == 'test' and 'answer' not in table.columns
    assert all(r.answer is None for r in table.rows) and not table.corrupt


def test_an_empty_answer_column_is_a_test_file(tmp_path, dev_tsv):
    table = read_mmbench_tsv(_rewrite(dev_tsv, tmp_path / 'test.tsv', lambda f: f.__setitem__('answer', '')))
    assert table.split == 'test' and not table.corrupt and all(r.answer is None for r in table.rows)


def test_circular_copies_share_the_main_rows_image(circular_tsv):
    table = read_mmbench_tsv(circular_tsv)
    by_index = {r.index: r for r in table.rows}
    copy = by_index[1_000_000]
    assert len(table.rows) == 12 + 4 * 3 + 4 * 3 + 4 * 1 and not table.corrupt
    assert copy.image == by_index[0].image
    assert copy.options['A'] == by_index[0].options['B']  # rotated by one
    assert copy.options[copy.answer] == by_index[0].options[by_index[0].answer]


def test_option_text_none_stays_text(tmp_path, dev_tsv):
    path = _rewrite(dev_tsv, tmp_path / 'none.tsv', lambda f: f.__setitem__('A', ['None'] * len(f)))
    assert read_mmbench_tsv(path).rows[0].options['A'] == 'None'


def test_corrupt_rows_are_named_skipped_and_counted(tmp_path, dev_tsv):
    def edit(frame):
        frame.loc[1, 'image'] = 'not base64 at all, and longer than sixteen characters'
        frame.loc[2, ['B', 'C', 'D']] = ''  # one option left
        frame.loc[3, 'answer'] = 'E'  # four options: A-D
        frame.loc[4, 'image'] = base64.b64encode(b'plain bytes, no picture inside').decode()
        frame.loc[5, 'image'] = '999'  # refers to no row
        frame.loc[6, 'index'] = frame.loc[0, 'index']  # duplicate

    table = read_mmbench_tsv(_rewrite(dev_tsv, tmp_path / 'bad.tsv', edit))
    reasons = {c.line: c.reason for c in table.corrupt}
    assert sorted(reasons) == [3, 4, 5, 6, 7, 8]  # rows 1..6 are lines 3..8
    assert 'base64' in reasons[3] and 'at least two options' in reasons[4] and 'not one of the options' in reasons[5]
    assert 'base64' in reasons[6] and 'refers to no row' in reasons[7] and 'duplicate' in reasons[8]
    assert len(table.rows) == 6
    assert table.corrupt[0].describe(table.path) == f'{table.path}:3 (index 1): {reasons[3]}'


def test_missing_columns_name_the_file_and_what_is_needed(tmp_path, dev_tsv):
    path = _rewrite(dev_tsv, tmp_path / 'noimage.tsv', lambda f: f.drop(columns=['image'], inplace=True))
    with pytest.raises(ValueError, match=r"noimage.tsv: missing column\(s\) \['image'\]"):
        read_mmbench_tsv(path)
    with pytest.raises(FileNotFoundError, match='--data-path'):
        read_mmbench_tsv(tmp_path / 'absent.tsv')
