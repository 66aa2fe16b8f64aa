"""``xtuner-ext internlm2 merge|chat``: finish the personal-assistant flow after ``xtuner train``.

    xtuner-ext internlm2 merge BASE ADAPTER OUT    # ADAPTER: the folder `xtuner convert pth_to_hf` wrote
    xtuner-ext internlm2 chat MODEL [--adapter ADAPTER] -q 你是谁 [-q ...]
"""
from __future__ import annotations

import argparse
from typing import List, Optional


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='xtuner-ext internlm2', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest='command', required=True)
    merge = commands.add_parser('merge', help='merge a LoRA adapter, write the official InternLM2 layout')
    merge.add_argument('base', help='the official InternLM2 folder training started from')
    merge.add_argument('adapter', help='the adapter folder written by `xtuner convert pth_to_hf`')
    merge.add_argument('out', help='folder to write (replaced if it exists)')
    merge.add_argument('--torch-dtype', default=None, help="e.g. bfloat16 (default: the base's dtype)")
    talk = commands.add_parser('chat', help='greedy answers to questions (no system prompt unless --system)')
    talk.add_argument('model', help='an official InternLM2 folder (e.g. the merged one)')
    talk.add_argument('--adapter', default=None, help='an adapter folder to merge in memory first')
    talk.add_argument('-q', '--question', action='append', required=True, help='repeat for several questions')
    talk.add_argument('--system', default='', help='system prompt (default: none, as in the assistant data)')
    talk.add_argument('--max-new-tokens', type=int, default=64)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == 'merge':
        from .merge import merge_internlm2_adapter
        print(f'wrote {merge_internlm2_adapter(args.base, args.adapter, args.out, args.torch_dtype)}')
        return 0
    from .chat import chat
    from .merge import merged_internlm2
    from .modeling import internlm2_tokenizer, load_internlm2
    import torch

    model = merged_internlm2(args.model, args.adapter) if args.adapter else load_internlm2(args.model, torch.float32)
    tokenizer = internlm2_tokenizer(args.model)
    for question in args.question:
        print(f'Q: {question}\nA: {chat(model, tokenizer, question, system=args.system, max_new_tokens=args.max_new_tokens)}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
