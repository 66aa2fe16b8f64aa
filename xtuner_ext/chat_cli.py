"""``xtuner-ext chat MODEL --image IMG``: talk to any official-layout InternVL2 folder, base or converted.

The tutorials' before/after check: greedy answers (so two folders can be compared), the image tiled
by the folder's own config.json (a converted folder carries its training tiling), multi-turn by
repeating ``--question`` or, without it, one question per line on stdin.
"""
from __future__ import annotations

import argparse
import sys
from typing import Iterable, Iterator, List, Optional


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='xtuner-ext chat', description=__doc__.split('\n\n')[0])
    parser.add_argument('model', help='an InternVL2 folder in the official layout')
    parser.add_argument('--image', help='the image the conversation is about (omit for text only)')
    parser.add_argument('--question', action='append',
                        help='a question (repeat for more turns); without it, questions are read from stdin')
    parser.add_argument('--device', default='auto', help="'cpu', 'cuda' or auto (cuda when available)")
    parser.add_argument('--dtype', default='auto', help="weights dtype (auto: the folder's torch_dtype)")
    parser.add_argument('--max-new-tokens', type=int, default=128)
    parser.add_argument('--max-dynamic-patch', type=int, help="tiles per image (default: the folder's config)")
    return parser


class ChatSession:
    """One conversation about one image with a loaded folder (greedy decoding)."""

    def __init__(self, folder: str, image: Optional[str] = None, device: str = 'auto', dtype: str = 'auto',
                 max_new_tokens: int = 128, max_dynamic_patch: Optional[int] = None):
        import torch

        from xtuner_ext.models.internvl2 import InternVL2Processor, InternVLChatModel

        device = ('cuda' if torch.cuda.is_available() else 'cpu') if device == 'auto' else device
        self.model = InternVLChatModel.from_pretrained(folder, torch_dtype=dtype, device=device)
        self.processor = InternVL2Processor.from_pretrained(folder, max_dynamic_patch=max_dynamic_patch)
        self.pixel_values = None
        if image is not None:
            self.pixel_values = self.processor.pixel_values(image).to(device, self.model.dtype)
        self.generation_config = dict(max_new_tokens=max_new_tokens, do_sample=False)
        self.history = None

    def ask(self, question: str) -> str:
        answer, self.history = self.model.chat(self.processor.tokenizer, self.pixel_values, question,
                                               self.generation_config, history=self.history, return_history=True)
        return answer


def _stdin_questions(stream) -> Iterator[str]:
    for line in stream:
        if line.strip():
            yield line.strip()


def run(session: ChatSession, questions: Iterable[str], out=sys.stdout) -> List[str]:
    answers = []
    for question in questions:
        answers.append(session.ask(question))
        print(f'USER: {question}\nASSISTANT: {answers[-1]}', file=out, flush=True)
    return answers


def is_internvl2_folder(path: str) -> bool:
    import json
    from pathlib import Path

    config = Path(path) / 'config.json'
    return config.is_file() and json.loads(config.read_text(encoding='utf-8')).get('model_type') == 'internvl_chat'


def stock_chat(argv: List[str]) -> int:
    """Stock ``xtuner chat`` (LLMs, LLaVA) for anything that is not an InternVL2 folder."""
    import subprocess

    from xtuner_ext.cli import tool_command

    code = subprocess.run(tool_command(['chat', *argv])).returncode
    return 128 - code if code < 0 else code


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and not argv[0].startswith('-') and not is_internvl2_folder(argv[0]):
        return stock_chat(argv)
    args = build_parser().parse_args(argv)
    try:
        session = ChatSession(args.model, args.image, args.device, args.dtype, args.max_new_tokens,
                              args.max_dynamic_patch)
    except (FileNotFoundError, ValueError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    if args.question is None and sys.stdin.isatty():
        print('one question per line; end with Ctrl-D', file=sys.stderr)
    run(session, args.question if args.question is not None else _stdin_questions(sys.stdin))
    return 0


if __name__ == '__main__':
    sys.exit(main())
