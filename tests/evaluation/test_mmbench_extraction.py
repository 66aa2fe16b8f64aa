"""Option letters from hand-made answers: letters first, then option texts, junk unmatched."""
import pytest

from xtuner_ext.evaluation.mmbench import extract_option

OPTIONS = {'A': 'red', 'B': 'dark red', 'C': 'blue', 'D': 'a cat'}


@pytest.mark.parametrize('prediction, letter, method', [
    ('B', 'B', 'letter'),
    (' C\n', 'C', 'letter'),
    ('B.', 'B', 'letter'),
    ('(D)', 'D', 'letter'),
    ('C. blue', 'C', 'letter'),
    ('A) red, clearly', 'A', 'letter'),
    ('D\nbecause it purrs', 'D', 'letter'),
    ('The answer is C.', 'C', 'letter'),
    ('答案是B', 'B', 'letter'),
    ('选项：D', 'D', 'letter'),
    ('It is blue.', 'C', 'text'),
    ('Dark red, I think', 'B', 'text'),  # 'red' is inside the longer match 'dark red'
    ('A cat sits there', 'D', 'text'),  # "A cat" is not option A
    ('E', None, 'unmatched'),  # no option E
    ('red or blue', None, 'unmatched'),  # two options named: ambiguous, not guessed
    ('xyzzy', None, 'unmatched'),
    ('', None, 'unmatched'),
    ('\ufffdMc', None, 'unmatched'),
])
def test_extraction(prediction, letter, method):
    result = extract_option(prediction, OPTIONS)
    assert (result.letter, result.method) == (letter, method)


def test_letters_only_count_when_they_are_options():
    assert extract_option('C', {'A': 'yes', 'B': 'no'}).letter is None
    assert extract_option('no', {'A': 'yes', 'B': 'no'}).letter == 'B'


def test_option_texts_match_whole_words_only():
    assert extract_option('I do not know', {'A': 'yes', 'B': 'no'}).letter is None
    assert extract_option('No.', {'A': 'yes', 'B': 'no'}).letter == 'B'
    assert extract_option('这是一只猫。', {'A': '狗', 'B': '猫'}).letter == 'B'
