"""The option letter a free-text answer picks, or None: never a guess.

Order, as the official post-processing (exact letter first, then option text), but stricter: a
letter counts only when it is one of the row's options and stands alone ("B", "B.", "(B)",
"B) red", "Answer: B"), so "A cat" is not read as option A; an option text counts only when
exactly one option's text occurs in the answer (as whole words) (a text inside a longer matching one, "red" in
"dark red", yields to it). What stays unmatched is reported by the scorer, not scored as a guess.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Optional

_LEADING_LETTER = re.compile(r'^[\s(\[（【*"\'“]*([A-Z])(?:$|[\s]*[.:：。,，、)\]）】*"\'”]|\s*\n)')
_ANSWER_IS = re.compile(r'(?:answer|option|choice|答案|选项)\s*(?:is|是|为|:|：)?\s*[(（]?([A-Z])(?![A-Za-z])',
                        re.IGNORECASE)


@dataclass(frozen=True)
class Extraction:
    letter: Optional[str]
    method: str  # 'letter', 'text' or 'unmatched'


def _letter(prediction: str, options: Mapping[str, str]) -> Optional[str]:
    for pattern in (_LEADING_LETTER, _ANSWER_IS):
        match = pattern.search(prediction)
        if match and match.group(1) in options:
            return match.group(1)
    return None


def _occurs(text: str, answer: str) -> bool:
    """``text`` in ``answer`` as whole words where it starts/ends with a letter or digit ("no" is
    not in "not"); Chinese text has no word boundaries and matches anywhere."""
    if not text.strip():
        return False
    head = r'(?<![^\W_])' if text[0].isalnum() and text[0].isascii() else ''
    tail = r'(?![^\W_])' if text[-1].isalnum() and text[-1].isascii() else ''
    return re.search(head + re.escape(text) + tail, answer) is not None


def _option_text(prediction: str, options: Mapping[str, str]) -> Optional[str]:
    answer = prediction.casefold()
    found = {k: str(v).casefold() for k, v in options.items() if _occurs(str(v).casefold(), answer)}
    longest = [k for k, v in found.items() if not any(v != w and v in w for w in found.values())]
    return longest[0] if len(longest) == 1 else None


def extract_option(prediction: str, options: Mapping[str, str]) -> Extraction:
    prediction = (prediction or '').strip()
    if (letter := _letter(prediction, options)) is not None:
        return Extraction(letter, 'letter')
    if (letter := _option_text(prediction, options)) is not None:
        return Extraction(letter, 'text')
    return Extraction(None, 'unmatched')
