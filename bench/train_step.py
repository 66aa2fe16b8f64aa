"""Benchmark: step time and peak memory of a QLoRA training run through stock `xtuner train`.

    python bench/train_step.py --preset internvl2-2b --epochs 2 --out bench.json   # on a GPU
    python bench/train_step.py --preset tiny --epochs 1                             # on the CPU
    python bench/train_step.py --preset internvl2-4b --epochs 2 --batch-size 8      # stock 4B QLoRA settings
    python bench/train_step.py --preset internvl2-2b --clot-like-records 320 --epochs 6 --full-iterations 750
                                          # the tutorial run's shape (6 epochs), fewer records, extrapolated

Builds a random-weight model of the preset's architecture (no real weights exist here) and the
embedded CLoT-style sample, trains with the matching config (internvl2_2b_qlora.py settings for
the 2B preset: batch 4, max_dynamic_patch 6, gradient checkpointing, nf4 LLM, LoRA r=128; the 1B and 4B
presets train with internvl2_1b_qlora.py / internvl2_4b_qlora.py, stock XTuner's settings), and
reads the per-iteration `time`, `data_time` and `memory` (peak allocated MiB, CUDA only) that
mmengine logs. Iterations before --skip are warm-up and not counted.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from xtuner_ext.fileio import write_atomically

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {'internvl2-1b': 'internvl2_1b_qlora.py', 'internvl2-2b': 'internvl2_2b_qlora.py',
           'internvl2-4b': 'internvl2_4b_qlora.py', 'tiny': 'internvl2_tiny_qlora.py'}
ITER = re.compile(r'Iter\(train\) \[\s*(\d+)/\d+\].*?time: ([0-9.]+)\s+data_time: ([0-9.]+)(?:.*?memory: (\d+))?'
                  r'.*?loss: ([0-9.]+)')


def prepare(root: Path, preset: str) -> dict:
    from xtuner_ext.data.sample import make_clot_sample
    from xtuner_ext.models.internvl2.tiny import make_tiny_model

    model_dir, data_dir = root / f'model_{preset}', root / 'CLoT_sample'
    started = time.time()
    if not model_dir.is_dir():
        make_tiny_model(model_dir, seed=0, preset=preset)
    if not data_dir.is_dir():
        make_clot_sample(data_dir, seed=0)
    return dict(model_dir=str(model_dir), data_dir=str(data_dir), prepare_s=round(time.time() - started, 1))


def stretched_answers(data_dir: Path, chars: int) -> Path:
    """train.json with each answer repeated to ``chars`` characters."""
    records = json.loads((data_dir / 'train.json').read_text(encoding='utf-8'))
    for record in records:
        answer = record['conversations'][1]['value']
        record['conversations'][1]['value'] = (answer * (chars // max(len(answer), 1) + 1))[:chars]
    out = data_dir / f'train_answers_{chars}.json'
    write_atomically(out, json.dumps(records, ensure_ascii=False).encode('utf-8'))
    return out


def summarize(log_text: str, skip: int, batch_size: int, iters_per_epoch: int = 0) -> dict:
    rows = [(int(i), float(t), float(d), int(m) if m else None, float(loss))
            for i, t, d, m, loss in ITER.findall(log_text)]
    timed = [r for r in rows if r[0] > skip]
    if not timed:
        raise SystemExit('no timed iterations in the log: training failed or --skip is too large')
    step = statistics.median(r[1] for r in timed)
    memory = [r[3] for r in rows if r[3] is not None]
    summary = dict(iterations=len(rows), timed_iterations=len(timed), median_step_s=round(step, 4),
                   median_data_s=round(statistics.median(r[2] for r in timed), 4),
                   samples_per_s=round(batch_size / step, 2), peak_allocated_mib=max(memory) if memory else None,
                   first_loss=rows[0][4], last_loss=rows[-1][4], steps_total_s=round(sum(r[1] for r in rows), 1))
    if iters_per_epoch and len(rows) > iters_per_epoch:
        # epoch 1 (after warm-up) against the later epochs: what per-run caches (the ViT features) save
        first = [r[1] for r in timed if r[0] <= iters_per_epoch]
        later = [r[1] for r in rows if r[0] > iters_per_epoch]
        summary.update(iters_per_epoch=iters_per_epoch, median_step_first_epoch_s=round(statistics.median(first), 4),
                       median_step_later_epochs_s=round(statistics.median(later), 4),
                       samples_per_s_later_epochs=round(batch_size / statistics.median(later), 2))
    return summary


def config_batch_size(config_path: Path) -> int:
    from mmengine.config import Config

    return Config.fromfile(str(config_path)).train_dataloader.batch_size


def clot_like_data(root: Path, model_dir: str, records: int) -> Path:
    """The tutorial run's shape: ``records`` short-joke records of 1-7 tiles (bench/clot_like.py)."""
    sys.path.insert(0, str(REPO))
    from bench.clot_like import write_clot_like_folder
    from xtuner_ext.models.internvl2 import InternVL2Processor

    processor = InternVL2Processor.from_pretrained(model_dir, max_dynamic_patch=6)
    return write_clot_like_folder(root / f'clot_like_{records}', processor, records)


def hook_data_overrides(config_path: Path, data_path: Path) -> list:
    """--cfg-options pointing the config's before/after chat hook at ``data_path`` (its own default,
    the CLoT folder's ex_cn.json or a heldout.json, does not exist in a generated folder)."""
    from mmengine.config import Config

    for index, hook in enumerate(Config.fromfile(str(config_path)).get('custom_hooks', [])):
        if 'train_data' in hook:
            key = f'custom_hooks.{index}'
            return [f'{key}.train_data={data_path}', f'{key}.image_folder={data_path.parent}',
                    *([f'{key}.heldout_data=None'] if hook.get('heldout_data') else [])]
    return []


def full_run_estimate(summary: dict, full_iterations: int, full_epochs: int) -> dict:
    """The whole run, extrapolated: everything that is not a training step in the measured run (start-up,
    the before/after evaluation, saving) plus ``full_iterations`` steps at the measured medians, the first
    epoch's at the first epoch's median and the rest at the later epochs' (when the run had several)."""
    overhead = summary['wall_s'] - summary['steps_total_s']
    first_epoch = full_iterations // max(full_epochs, 1)
    first = summary.get('median_step_first_epoch_s', summary['median_step_s'])
    later = summary.get('median_step_later_epochs_s', summary['median_step_s'])
    steps = first_epoch * first + (full_iterations - first_epoch) * later
    return dict(full_iterations=full_iterations, full_epochs=full_epochs, overhead_s=round(overhead, 1),
                estimated_full_run_s=round(overhead + steps, 1))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--preset', choices=sorted(CONFIGS), default='tiny')
    parser.add_argument('--root', default='work_dirs/bench')
    parser.add_argument('--epochs', type=int, default=1)
    parser.add_argument('--skip', type=int, default=3, help='warm-up iterations not timed')
    parser.add_argument('--batch-size', type=int, help="per-device batch size (default: the config's)")
    parser.add_argument('--out', help='write the summary JSON here too')
    parser.add_argument('--answer-chars', type=int, default=0,
                        help='stretch every answer to this many characters (truncated at max_length): the '
                             'worst case of the config, every sample at max_length')
    parser.add_argument('--deepspeed', help='passed to `xtuner train --deepspeed` (e.g. deepspeed_zero2)')
    parser.add_argument('--clot-like-records', type=int, default=0,
                        help='train on this many CLoT-like records (1/3/5/7-tile images, short jokes)')
    parser.add_argument('--full-iterations', type=int, default=0,
                        help='extrapolate the wall time of a run of this many iterations (750 = 6 x 2000 / 16)')
    parser.add_argument('--full-epochs', type=int, default=6, help='epochs of that run (its first is timed apart)')
    parser.add_argument('cfg_options', nargs='*', help='extra --cfg-options KEY=VALUE')
    args = parser.parse_args(argv)
    root = Path(args.root).resolve()
    config_path = REPO / 'configs' / 'internvl' / CONFIGS[args.preset]
    batch_size = args.batch_size or config_batch_size(config_path)
    paths = prepare(root, args.preset)
    work_dir = root / f'work_{args.preset}_{args.deepspeed or "amp"}_{args.answer_chars}'
    data_path = Path(paths['data_dir']) / 'train.json'
    hook_options = []
    if args.clot_like_records:
        data_path = clot_like_data(root, paths['model_dir'], args.clot_like_records)
        paths['data_dir'] = str(data_path.parent)
        hook_options = hook_data_overrides(config_path, data_path)
    if args.answer_chars:
        data_path = stretched_answers(Path(paths['data_dir']), args.answer_chars)
    env = dict(os.environ, XTUNER_EXT_MODEL_PATH=paths['model_dir'], XTUNER_EXT_DATA_ROOT=paths['data_dir'])
    command = [sys.executable, '-m', 'xtuner_ext.cli', 'train', str(REPO / 'configs' / 'internvl' / CONFIGS[args.preset]),
               '--work-dir', str(work_dir), *(['--deepspeed', args.deepspeed] if args.deepspeed else []),
               '--cfg-options', f'train_cfg.max_epochs={args.epochs}',
               'log_processor.window_size=1', 'default_hooks.logger.interval=1',
               'default_hooks.checkpoint.interval=100000', f'train_dataloader.dataset.data_path={data_path}',
               f'train_dataloader.batch_size={batch_size}', *hook_options,
               *args.cfg_options]
    logs_before = set(work_dir.glob('*/*.log'))
    started = time.time()
    code = subprocess.run(command, env=env).returncode
    logs = sorted(set(work_dir.glob('*/*.log')) - logs_before)  # this run's log only
    summary = dict(preset=args.preset, deepspeed=args.deepspeed, answer_chars=args.answer_chars, exit_code=code, wall_s=round(time.time() - started, 1),
                   prepare_s=paths['prepare_s'])
    if logs:
        iters_per_epoch = -(-args.clot_like_records // batch_size) if args.clot_like_records else 0
        summary.update(summarize(logs[-1].read_text(encoding='utf-8'), args.skip, batch_size, iters_per_epoch))
        if args.full_iterations and 'median_step_s' in summary:
            summary.update(full_run_estimate(summary, args.full_iterations, args.full_epochs))
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + '\n')
    return code


if __name__ == '__main__':
    sys.exit(main())
