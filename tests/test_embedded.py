"""A missing embedded default (or a variable pointing nowhere) says how to make it or what to set."""
import pytest

from xtuner_ext.data.loaders import load_any
from xtuner_ext.data.records import DataFormatError
from xtuner_ext.embedded import missing_path_hint


def test_missing_embedded_data_says_how_to_make_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # any folder but the repository root
    monkeypatch.delenv('XTUNER_EXT_DATA_ROOT', raising=False)
    with pytest.raises(DataFormatError, match=r'embedded/CLoT_sample/train.json: data file not found\. .*run `make '
                                              r'demo` once in the repository root.*or set XTUNER_EXT_DATA_ROOT'):
        load_any('embedded/CLoT_sample/train.json')


def test_data_path_from_the_variable_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv('XTUNER_EXT_DATA_ROOT', str(tmp_path / 'gone'))
    with pytest.raises(DataFormatError, match=r'It comes from XTUNER_EXT_DATA_ROOT=.*gone: point it at a '
                                              r'CLoT_cn_2000-style data folder'):
        load_any(str(tmp_path / 'gone' / 'train.json'))


def test_other_paths_get_no_hint(tmp_path, monkeypatch):
    monkeypatch.delenv('XTUNER_EXT_MODEL_PATH', raising=False)
    monkeypatch.delenv('XTUNER_EXT_DATA_ROOT', raising=False)
    assert missing_path_hint(tmp_path / 'elsewhere') == ''
    assert missing_path_hint('embedded/internvl2_tiny_copy') == ''
