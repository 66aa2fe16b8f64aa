"""The LLaVA tutorial's data repetition: a json list written ``n`` times over, in order.

Repeating a handful of records 200 times is how the tutorial makes one epoch long enough to
change the model (and why its "after" answers are near-copies of the training answers).
"""
from __future__ import annotations

import argparse
import json
from typing import Optional

from xtuner_ext.fileio import write_atomically


def repeat_records(records: list, times: int) -> list:
    if times < 1:
        raise ValueError(f'-n must be at least 1, got {times}')
    return list(records) * times


def repeat_file(source: str, target: str, times: int) -> int:
    """Write ``source``'s records ``times`` times into ``target``; returns the record count."""
    with open(source, encoding='utf-8') as f:
        records = json.load(f)
    if not isinstance(records, list):
        raise ValueError(f'{source} holds a json {type(records).__name__}, expected a list of records '
                         '(the LLaVA format: [{"id": ..., "image": ..., "conversations": [...]}, ...])')
    repeated = repeat_records(records, times)
    write_atomically(target, json.dumps(repeated, ensure_ascii=False, indent=4).encode('utf-8'))
    return len(repeated)


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description='Repeat a json list of training records N times.')
    parser.add_argument('-i', '--input', required=True, help='json list of records (e.g. unique_data.json)')
    parser.add_argument('-o', '--output', required=True, help='json file to write (e.g. repeated_data.json)')
    parser.add_argument('-n', '--number', type=int, required=True, help='how many times (tutorial: 200)')
    args = parser.parse_args(argv)
    try:
        count = repeat_file(args.input, args.output, args.number)
    except (OSError, ValueError) as err:
        print(f'error: {err}')
        return 2
    print(f'wrote {count} records to {args.output}')
    return 0
