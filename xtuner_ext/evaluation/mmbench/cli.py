"""``xtuner-ext mmbench``: MMBench/CCBench accuracy of an InternVL2 or LLaVA model, or of two side by side.

    xtuner-ext mmbench MODEL --data-path MMBench_DEV_EN.tsv --work-dir work_dirs/mmbench
    xtuner-ext mmbench BASE --compare FINETUNED --data-path MMBench_DEV_EN.tsv --work-dir DIR

MODEL is an official-layout InternVL2 folder, a llava-hf folder (``xtuner-ext llava export``), or a
training config (InternVL2 or LLaVA) with ``--checkpoint iter_N.pth`` (``--compare-checkpoint`` for a
config given to ``--compare``). InternVL2 is asked as the official InternVL evaluation asks, LLaVA as
``xtuner mmbench`` asks.
"""
from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path

from .compare import comparison_json, render_comparison
from .report import render_result
from .runner import evaluate
from .writing import write_json


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='xtuner-ext mmbench', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('model', help='InternVL2 or llava-hf folder, or a config .py (with --checkpoint)')
    p.add_argument('--checkpoint', help='iter_N.pth of a config MODEL')
    p.add_argument('--compare', metavar='FINETUNED', help='second model (folder or config): before/after table')
    p.add_argument('--compare-checkpoint', help='iter_N.pth of a config given to --compare')
    p.add_argument('--data-path', required=True, help='MMBench/CCBench .tsv in the official layout')
    p.add_argument('--work-dir', required=True, help='predictions, .xlsx and results go here (resumable)')
    p.add_argument('--language', choices=('auto', 'en', 'cn'), default='auto',
                   help='instruction language; auto: cn for *_CN files and CCBench')
    p.add_argument('--circular', action='store_true', help='also ask every rotation of the options')
    p.add_argument('--no-dynamic', dest='dynamic', action='store_false',
                   help='InternVL2: one tile per image (the official script then searches 5 beams; this stays greedy)')
    p.add_argument('--max-num', type=int, default=6, help='InternVL2: most dynamic tiles (official: 6)')
    p.add_argument('--max-new-tokens', type=int, default=100)
    p.add_argument('--device', default=None, help='default: cuda if available, else cpu')
    p.add_argument('--torch-dtype', choices=('float32', 'float16', 'bfloat16'), default=None,
                   help="folder models; default: the checkpoint's")
    p.add_argument('--limit', type=int, default=None, help='only the first N questions (a quick look)')
    p.add_argument('--no-progress', dest='progress', action='store_false')
    return p


def default_device(args) -> str:
    import torch

    return args.device or ('cuda' if torch.cuda.is_available() else 'cpu')


def load_config_answerer(config: str, checkpoint, args):
    """An InternVL2 or LLaVA training config with its trained ``iter_N.pth``."""
    from mmengine.config import Config

    from .answering import InternVL2Answerer
    from .llava_answering import LLaVAConfigAnswerer, is_llava_config

    if not checkpoint:
        raise ValueError(f'{config} is a config: also pass its trained weights, e.g. --checkpoint '
                         'work_dirs/<config>/iter_N.pth')
    if is_llava_config(Config.fromfile(config)):
        return LLaVAConfigAnswerer(config, checkpoint, default_device(args), args.max_new_tokens)
    return InternVL2Answerer.from_config(config, checkpoint, dynamic=args.dynamic, max_num=args.max_num,
                                         max_new_tokens=args.max_new_tokens)


def load_answerer(model: str, checkpoint, args):
    from .answering import InternVL2Answerer
    from .llava_answering import LLaVAHFAnswerer, is_llava_folder

    if model.endswith('.py'):
        return load_config_answerer(model, checkpoint, args)
    if checkpoint:
        raise ValueError(f'--checkpoint goes with a config .py; {model} is a model folder')
    if is_llava_folder(model):
        return LLaVAHFAnswerer(model, default_device(args), args.torch_dtype, args.max_new_tokens)
    return InternVL2Answerer.from_folder(model, device=default_device(args), torch_dtype=args.torch_dtype,
                                         dynamic=args.dynamic, max_num=args.max_num,
                                         max_new_tokens=args.max_new_tokens)


def run_one(model: str, checkpoint, work_dir: Path, args) -> dict:
    answerer = load_answerer(model, checkpoint, args)
    try:
        result = evaluate(answerer, args.data_path, work_dir, args.language, args.circular, args.limit, args.progress)
    finally:
        del answerer
        gc.collect()
    print(render_result(f'{result["data"]} ({model})', result))
    print(f'written: {work_dir}')
    return result


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    work_dir = Path(args.work_dir)
    try:
        if args.compare is None:
            run_one(args.model, args.checkpoint, work_dir, args)
            return 0
        base = run_one(args.model, args.checkpoint, work_dir / 'base', args)
        tuned = run_one(args.compare, args.compare_checkpoint, work_dir / 'finetuned', args)
    except (ValueError, FileNotFoundError) as err:
        print(f'xtuner-ext mmbench: error: {err}', file=sys.stderr)
        return 1
    text = render_comparison(base, tuned)
    write_json(work_dir / 'compare.json', comparison_json(base, tuned))
    (work_dir / 'compare.txt').write_text(text + '\n', encoding='utf-8')
    print(f'\nbefore/after on {base["data"]}:\n{text}')
    return 0
