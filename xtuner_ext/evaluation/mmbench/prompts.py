"""MMBench questions as the official InternVL evaluation asks them.

``internvl_chat/eval/mmbench/evaluate_mmbench.py`` (OpenGVLab/InternVL) builds, per row: the hint
and a newline before the question when there is a hint, then ``\\n{letter}. {text}`` per non-empty
option, then a newline and the instruction of the file's language; ``chat()`` then puts
``<image>\\n`` in front. VLMEvalKit's ``build_multi_choice_prompt`` for InternVL gives the same text.
The language is the file's (the official table marks the ``*_CN`` files and CCBench Chinese).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Union

from .tsv import MMBenchRow

INSTRUCTIONS = {
    'en': "Answer with the option's letter from the given choices directly.",
    'cn': '请直接回答选项字母。',
}
_CHINESE_FILE = re.compile(r'(^|[_\-.])cn([_\-.]|$)|ccbench', re.IGNORECASE)


def language_of(path: Union[str, Path]) -> str:
    """'cn' for ``MMBench_DEV_CN.tsv``, ``mmbench_test_cn_20231003.tsv``, ``CCBench.tsv``; else 'en'."""
    return 'cn' if _CHINESE_FILE.search(Path(path).stem) else 'en'


def build_question(row: MMBenchRow, language: str) -> str:
    """The question text the official evaluation passes to ``model.chat`` (before ``<image>\\n``)."""
    if language not in INSTRUCTIONS:
        raise ValueError(f'language {language!r} is not one of {sorted(INSTRUCTIONS)}')
    question = row.question if row.hint is None else row.hint + '\n' + row.question
    for letter, text in row.options.items():
        question += f'\n{letter}. {text}'
    return question + '\n' + INSTRUCTIONS[language]
