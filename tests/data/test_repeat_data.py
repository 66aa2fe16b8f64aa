"""tools/repeat_data.py: the LLaVA tutorial's repetition, and the tutorial format passes the preflight check."""
import json

from xtuner_ext.data.llava_sample import RECORDS, make_llava_sample
from xtuner_ext.data.repeat import main


def test_repeats_in_order(tmp_path, capsys):
    make_llava_sample(tmp_path)
    assert main(['-i', str(tmp_path / 'unique_data.json'), '-o', str(tmp_path / 'out.json'), '-n', '3']) == 0
    assert json.loads((tmp_path / 'out.json').read_text(encoding='utf-8')) == RECORDS * 3
    assert 'wrote 6 records' in capsys.readouterr().out


def test_bad_input_is_reported(tmp_path, capsys):
    (tmp_path / 'dict.json').write_text('{"id": 1}')
    assert main(['-i', str(tmp_path / 'dict.json'), '-o', str(tmp_path / 'out.json'), '-n', '2']) == 2
    assert 'expected a list of records' in capsys.readouterr().out
    assert main(['-i', str(tmp_path / 'dict.json'), '-o', str(tmp_path / 'out.json'), '-n', '0']) == 2


def test_tutorial_format_passes_the_preflight_check(tmp_path, capsys):
    from xtuner_ext.data.check import main as check

    make_llava_sample(tmp_path)
    assert check(['--data', str(tmp_path / 'unique_data.json'), '--image-folder', str(tmp_path)]) == 0
    assert 'checked 2 records: 2 usable, 0 with problems' in capsys.readouterr().out
