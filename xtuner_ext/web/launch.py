"""``xtuner-ext web BASE [FINETUNED]``: load the folders, build the page, serve it on localhost.

    xtuner-ext web embedded/internvl2_tiny work_dirs/demo/converted \\
        --examples embedded/CLoT_sample/heldout.json --port 7860
    xtuner-ext web embedded/internvl2_tiny --config configs/internvl/internvl2_tiny_qlora.py \\
        --checkpoint work_dirs/demo/iter_100.pth     # the fine-tune as training left it
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from .inputs import DEFAULT_MAX_IMAGE_PIXELS, GenerationSettings

DEFAULT_HOST, DEFAULT_PORT = '127.0.0.1', 7860


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='xtuner-ext web', description=__doc__.split('\n\n')[0])
    parser.add_argument('base', help='InternVL2 folder (official layout) answering in the left column')
    parser.add_argument('finetuned', nargs='?', help='a second folder, e.g. the converted fine-tune')
    parser.add_argument('--config', help='instead of FINETUNED: the training config of the fine-tune ...')
    parser.add_argument('--checkpoint', help='... and the iter_N.pth it wrote')
    parser.add_argument('--examples', help='held-out records (.json/.jsonl conversations, or a CLoT folder) '
                        'offered as clickable samples')
    parser.add_argument('--max-examples', type=int, default=12)
    parser.add_argument('--host', default=DEFAULT_HOST, help='interface to bind (default: localhost only)')
    parser.add_argument('--port', type=int, default=DEFAULT_PORT)
    parser.add_argument('--device', default=None, help='cpu, cuda or cuda:N (default: cuda when available)')
    parser.add_argument('--dtype', default=None, help='bfloat16, float16 or float32 (default: the checkpoint\'s)')
    parser.add_argument('--max-new-tokens', type=int, default=GenerationSettings.max_new_tokens,
                        help='the page\'s initial value')
    parser.add_argument('--max-image-pixels', type=int, default=DEFAULT_MAX_IMAGE_PIXELS,
                        help='larger uploads are refused with a message')
    args = parser.parse_args(argv)
    if (args.config is None) != (args.checkpoint is None):
        parser.error('--config and --checkpoint go together')
    if args.config and args.finetuned:
        parser.error('give FINETUNED or --config/--checkpoint, not both')
    return args


def load_examples(path: str, limit: int) -> list:
    """(image path, question) of the first ``limit`` records that have an image."""
    from xtuner_ext.data.loaders import load_any
    from xtuner_ext.models.internvl2 import IMAGE_PLACEHOLDER

    records, image_folder = load_any(path)
    examples = []
    for record in records:
        if record.get('image') and len(examples) < limit:
            question = record['conversations'][0]['value'].replace(IMAGE_PLACEHOLDER, '').strip()
            examples.append((str(Path(image_folder) / record['image']), question))
    return examples


def open_hint(model_dir: Path, config: Path, checkpoint: Path, examples: Path) -> str:
    """The command that opens the page on a finished ``make demo`` run (printed by tools/demo.py)."""
    def short(path: Path) -> str:
        path = Path(path).resolve()
        return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)

    return (f'Chat with the base and the fine-tuned model in the browser:\n'
            f'  XTUNER_EXT_MODEL_PATH={short(model_dir)} xtuner-ext web {short(model_dir)} '
            f'--config {short(config)} --checkpoint {short(checkpoint)} --examples {short(examples)}\n'
            f'  then open http://{DEFAULT_HOST}:{DEFAULT_PORT}')


def load_slots(args: argparse.Namespace) -> list:
    """Base, and the fine-tune when given; a folder that cannot be loaded is reported here and in the page."""
    from .loading import default_device, load_slot, load_trained_slot

    device = args.device or default_device()
    slots = [load_slot('Base', args.base, args.dtype, device)]
    if args.finetuned:
        slots.append(load_slot('Fine-tuned', args.finetuned, args.dtype, device))
    elif args.config:
        slots.append(load_trained_slot('Fine-tuned', args.config, args.checkpoint))
    for slot in slots:
        if not slot.ready:
            print(f'xtuner-ext web: {slot.label}: {slot.error}', file=sys.stderr)
    return slots


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        examples = load_examples(args.examples, args.max_examples) if args.examples else []
    except (OSError, ValueError) as exc:  # DataFormatError is a ValueError naming the file
        print(f'xtuner-ext web: --examples {args.examples}: {exc}', file=sys.stderr)
        return 2
    slots = load_slots(args)
    if not any(slot.ready for slot in slots):
        return 2

    from .app import build_app
    app = build_app(slots, examples, args.max_image_pixels, GenerationSettings(args.max_new_tokens))
    app.queue(default_concurrency_limit=1)  # one generation at a time on the one device
    app.launch(server_name=args.host, server_port=args.port, share=False, show_error=True, ssr_mode=False,
               mcp_server=False, allowed_paths=sorted({str(Path(image).parent) for image, _ in examples}))
    return 0


if __name__ == '__main__':
    sys.exit(main())
