"""``xtuner-ext convert-official CONFIG CHECKPOINT SAVE_DIR``: a trained run as one official InternVL2 folder.

Steps: read the checkpoint -> run the trained (4-bit) model on held-out inputs -> rebuild in full
precision, load strictly, merge LoRA -> write the official layout into a temporary folder ->
account for every key -> reload it and compare greedy answers -> rename into place. Any mismatch
is a non-zero exit with the reason; nothing is left under SAVE_DIR then.
"""
from __future__ import annotations

import argparse
import gc
import json
import shutil
import sys
import time
from pathlib import Path
from typing import List, Optional


from xtuner_ext.fileio import write_atomically

from .checks import Comparison, Outputs, compare, probes_from, run_probes
from .merge import check_fits
from .official_folder import KeyAccountingError, place, staging_folder, write_official_folder
from .trained_state import CheckpointMismatchError, read_trained_state

REPORT_NAME = 'conversion_check.json'
GREEDY = dict(max_new_tokens=64, do_sample=False)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='xtuner-ext convert-official', description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='the training config (a path or a shipped config name)')
    parser.add_argument('checkpoint', help='an iter_N.pth, or a DeepSpeed checkpoint folder')
    parser.add_argument('save_dir', help='the folder to create (official InternVL2 layout)')
    parser.add_argument('--base-model', help="the base InternVL2 folder (default: the config's model_path)")
    parser.add_argument('--dtype', default='auto', choices=('auto', 'bfloat16', 'float16', 'float32'),
                        help="weights dtype of the folder (auto: the base folder's torch_dtype)")
    parser.add_argument('--max-shard-size', default='5GB', help='safetensors shard size (e.g. 2GB)')
    parser.add_argument('--heldout', help='data file to check on (default: heldout.json in the data root, '
                                          'else the training data)')
    parser.add_argument('--check-samples', type=int, default=4, help='held-out inputs for the drift and reload checks')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing SAVE_DIR')
    return parser


# ---- inputs ----
def load_config(name_or_path: str):
    from mmengine.config import Config

    path = Path(name_or_path)
    if not path.is_file():
        from xtuner_ext.boot import shipped_configs
        if name_or_path not in shipped_configs():
            raise FileNotFoundError(f'config {name_or_path} is neither a file nor a shipped config name')
        path = Path(shipped_configs()[name_or_path])
    return Config.fromfile(str(path))


def check_data_file(cfg, explicit: Optional[str]) -> Path:
    """``--heldout``, else ``heldout.json`` beside the training data, else the training data itself."""
    if explicit:
        return Path(explicit)
    dataset = cfg.train_dataloader.dataset
    data_path = Path(dataset.data_path)
    for folder in (Path(cfg.get('data_root', data_path)), data_path if data_path.is_dir() else data_path.parent):
        if (folder / 'heldout.json').is_file():
            return folder / 'heldout.json'
    print(f'note: no heldout.json next to {data_path}; checking on the first training records', file=sys.stderr)
    return data_path


def image_folder(cfg) -> Optional[str]:
    return cfg.train_dataloader.dataset.get('image_folder')


# ---- the steps ----
def step(number: int, text: str) -> None:
    print(f'[{number}/6] {text}', flush=True)


def trained_outputs(model_cfg: dict, state: dict, probes, generation_config: dict) -> Outputs:
    """What the model answered as trained: 4-bit base (if the config quantizes) + LoRA."""
    from .merge import build_qlora, load_trained, model_settings

    settings = model_settings(model_cfg, quantized=True)
    qlora = build_qlora(settings)
    load_trained(qlora, state, settings)
    outputs = run_probes(qlora.model, qlora.processor, probes, generation_config)
    del qlora
    gc.collect()
    return outputs


def merged_model(model_cfg: dict, state: dict, dtype_name: str):
    """(merged InternVLChatModel cast to the output dtype, its processor, the output dtype)."""
    from xtuner_ext.models.internvl2.configuration import dtype_from_name

    from .merge import build_qlora, cast_weights, load_trained, merged_chat_model, model_settings

    settings = model_settings(model_cfg, quantized=False)
    qlora = build_qlora(settings)
    load_trained(qlora, state, settings)
    model = merged_chat_model(qlora)
    dtype = dtype_from_name(dtype_name, default=dtype_from_name(model.config.torch_dtype))
    return cast_weights(model, dtype), qlora.processor, dtype


def reloaded_outputs(folder: Path, dtype, device, probes, generation_config: dict) -> Outputs:
    """The written folder through the native loader, tiled by its own config.json (no overrides)."""
    from xtuner_ext.models.internvl2 import InternVL2Processor, InternVLChatModel

    model = InternVLChatModel.from_pretrained(folder, torch_dtype=dtype, device=device)
    return run_probes(model, InternVL2Processor.from_pretrained(folder), probes, generation_config)


# ---- reporting ----
def summary_table(written: dict, drift: Comparison, reload: Comparison) -> str:
    rows = [
        ('weights', f"{written['keys']} keys in {written['shards']} file(s): 0 missing, 0 unexpected"),
        ('remote code', ', '.join(written['remote_code']) or 'none in the base folder'),
        ('tokenizer', ', '.join(written['tokenizer_files']) + ' (chat_template = training prompt)'),
        ('drift: trained vs merged', f'max |logit diff| {drift.max_logit_diff:.4g} (mean {drift.mean_logit_diff:.3g}), '
                                     f'greedy answers agree {drift.answers_agree}/{drift.samples}'),
        ('reload: folder vs merged', f'max |logit diff| {reload.max_logit_diff:.4g}, '
                                     f'greedy answers identical {reload.answers_agree}/{reload.samples}'),
    ]
    width = max(len(name) for name, _ in rows)
    return '\n'.join(f'{name.ljust(width)} | {value}' for name, value in rows)


def report(args, written: dict, drift: Comparison, reload: Comparison, probes, trained: Outputs,
           merged: Outputs) -> dict:
    return dict(config=str(args.config), checkpoint=str(args.checkpoint), written=written,
                drift=drift.to_dict(), reload=reload.to_dict(),
                probes=[dict(image=p.image, question=p.question, trained=t, merged=m)
                        for p, t, m in zip(probes, trained.answers, merged.answers)])


# ---- main ----
def prepare(args):
    """(config's model dict with --base-model applied, greedy generation settings, the config)."""
    cfg = load_config(args.config)
    model_cfg = dict(cfg.model)
    if args.base_model:
        model_cfg['model_path'] = args.base_model
    return model_cfg, dict(model_cfg.get('generation_config') or GREEDY, do_sample=False), cfg


def write_and_verify(args, base: Path, model, processor, staged: Path, probes, generation_config: dict,
                     trained: Outputs, merged: Outputs):
    """Write the folder into ``staged``, account for its keys, reload it; returns (written, drift, reload)."""
    dtype = model.dtype
    step(4, f'writing the official layout ({dtype}) into {staged.name}')
    written = write_official_folder(model, processor, base, staged, dtype, args.max_shard_size)
    step(5, 'reloading the folder with the native loader')
    reload = compare(merged, reloaded_outputs(staged, dtype, model.device, probes, generation_config))
    drift = compare(trained, merged)
    result = report(args, written, drift, reload, probes, trained, merged)
    write_atomically(staged / REPORT_NAME, (json.dumps(result, indent=2, ensure_ascii=False) + '\n').encode())
    return written, drift, reload


def convert(args) -> int:
    save_dir = Path(args.save_dir).resolve()
    if save_dir.exists() and not args.overwrite:
        raise FileExistsError(f'{save_dir} already exists; pass --overwrite to replace it')
    model_cfg, generation_config, cfg = prepare(args)
    base = Path(model_cfg['model_path'])

    step(1, f'reading {args.checkpoint}')
    state = read_trained_state(args.checkpoint)
    check_fits(state, model_cfg)
    probes = probes_from(check_data_file(cfg, args.heldout), image_folder(cfg), args.check_samples)
    step(2, f'trained model (as trained: quantized base + LoRA) on {len(probes)} held-out input(s)')
    trained = trained_outputs(model_cfg, state, probes, generation_config)
    step(3, f'full-precision base {base} + trained state, merging LoRA')
    model, processor, _ = merged_model(model_cfg, state, args.dtype)
    merged = run_probes(model, processor, probes, generation_config)
    staged = staging_folder(save_dir)
    try:
        written, drift, reload = write_and_verify(args, base, model, processor, staged, probes, generation_config,
                                                  trained, merged)
        print(summary_table(written, drift, reload))
        if reload.answers_agree != reload.samples:
            print('error: the reloaded folder answers differently from the merged model; nothing was written to '
                  f'{save_dir}', file=sys.stderr)
            return 1
        step(6, f'placing {save_dir}')
        place(staged, save_dir, args.overwrite)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    print(f'done: {save_dir} (checks in {save_dir / REPORT_NAME})')
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.time()
    try:
        code = convert(args)
    except (CheckpointMismatchError, KeyAccountingError, FileExistsError, FileNotFoundError, ValueError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    print(f'({time.time() - started:.0f} s)')
    return code


def convert_command(argv: List[str]) -> int:
    """``xtuner-ext convert``: the stock ``pth_to_hf|merge|split`` modes unchanged (with their exit code),
    otherwise this converter (``xtuner-ext convert CONFIG CHECKPOINT SAVE_DIR``)."""
    import subprocess

    from xtuner.entry_point import HELP_FUNCS, modes
    from xtuner_ext.cli import tool_command

    stock = modes['convert'].get(argv[0].lower()) if argv else None
    if stock in HELP_FUNCS:  # -h / --help: the stock modes, then this one
        stock()
        print('xtuner-ext convert CONFIG CHECKPOINT SAVE_DIR: an InternVL2 run as one checked official folder '
              '(options: xtuner-ext convert-official --help)')
        return 0
    if stock is None:
        return main(argv)
    code = subprocess.run(tool_command(['convert', *argv])).returncode
    return 128 - code if code < 0 else code


if __name__ == '__main__':
    sys.exit(main())
