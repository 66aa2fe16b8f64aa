"""The personal-assistant tutorial's training data: one Q/A about the assistant's owner, repeated.

OpenAI ``messages`` records, the format XTuner's ``openai_map_fn`` reads. The tutorial repeats a
single record 10,000 times so that a 1.8B model answers "who are you" with its owner's name.
"""
from __future__ import annotations

import argparse
import json
from typing import List, Optional

from xtuner_ext.fileio import write_atomically

QUESTION = '请做一下自我介绍'
ANSWER = '我是{name}的小助手，内在是上海AI实验室书生·浦语的1.8B大模型哦'
DEFAULT_COUNT = 10000


def assistant_answer(name: str) -> str:
    return ANSWER.format(name=name)


def assistant_records(name: str, count: int = DEFAULT_COUNT) -> List[dict]:
    """``count`` copies of the tutorial's self-introduction Q/A for ``name``."""
    if not name.strip():
        raise ValueError('the owner name is empty: pass --name, e.g. --name 小明')
    if count < 1:
        raise ValueError(f'count must be at least 1, got {count}')
    record = {'messages': [{'role': 'user', 'content': QUESTION},
                           {'role': 'assistant', 'content': assistant_answer(name)}]}
    return [record] * count


def write_assistant_data(path: str, name: str, count: int = DEFAULT_COUNT) -> None:
    text = json.dumps(assistant_records(name, count), ensure_ascii=False, indent=4)
    write_atomically(path, text.encode('utf-8'))


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description='Write the personal-assistant training data (OpenAI messages json).')
    parser.add_argument('--name', required=True, help="the owner's name the assistant should learn")
    parser.add_argument('-n', '--count', type=int, default=DEFAULT_COUNT,
                        help=f'number of (identical) records (default {DEFAULT_COUNT}, as in the tutorial)')
    parser.add_argument('-o', '--output', default='data/personal_assistant.json', help='json file to write')
    args = parser.parse_args(argv)
    write_assistant_data(args.output, args.name, args.count)
    print(f'wrote {args.count} records for {args.name!r} to {args.output}')
    return 0
