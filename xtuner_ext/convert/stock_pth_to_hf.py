"""Stock ``xtuner convert pth_to_hf`` on an InternVL2QLoRA config: run this package's converter.

XTuner's tool reads ``cfg.model.llm`` and crashes on our configs (``AttributeError: 'ConfigDict'
object has no attribute 'llm'``); ``boot.py`` hands such configs here instead, with the tool's own
arguments mapped onto ``xtuner-ext convert-official``.
"""
from __future__ import annotations

import argparse
import sys
from typing import List


def converter_argv(config_path: str, argv: List[str]) -> List[str]:
    """pth_to_hf's arguments as ``convert-official`` arguments (``--fp32`` -> ``--dtype float32``)."""
    parser = argparse.ArgumentParser(prog='xtuner convert pth_to_hf')
    parser.add_argument('config')
    parser.add_argument('pth_model')
    parser.add_argument('save_dir')
    parser.add_argument('--fp32', action='store_true')
    parser.add_argument('--max-shard-size', default='5GB')
    parser.add_argument('--safe-serialization', action='store_true')  # always safetensors
    parser.add_argument('--save-format', default='official')  # always the official layout
    parser.add_argument('--cfg-options', nargs='+')
    args = parser.parse_args(argv)
    if args.cfg_options:
        raise SystemExit('xtuner convert pth_to_hf: --cfg-options is not supported for InternVL2QLoRA configs; '
                         'edit a copy of the config, or run xtuner-ext convert-official CONFIG CHECKPOINT SAVE_DIR')
    return [config_path, args.pth_model, args.save_dir, '--max-shard-size', args.max_shard_size,
            *(['--dtype', 'float32'] if args.fp32 else [])]


def run_for_stock_tool(config_path: str, argv: List[str]) -> int:
    from .convert_cli import main

    print('xtuner convert pth_to_hf: an InternVL2QLoRA config, converted by xtuner_ext '
          '(same as: xtuner-ext convert-official CONFIG CHECKPOINT SAVE_DIR)', file=sys.stderr)
    return main(converter_argv(config_path, argv))
