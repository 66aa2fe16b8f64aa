"""Benchmark: rows/s of ``xtuner-ext mmbench`` on the full-size InternVL2-2B architecture.

    python3 bench/mmbench_speed.py --out $OUT/mmbench_speed.json              # GPU machine, ~4 minutes
    python3 bench/mmbench_speed.py --max-new-tokens 2 --budget-s 240          # a real model's letter + stop
    python bench/mmbench_speed.py --preset tiny --rows 6 --device cpu          # CPU smoke run

Builds the random-weight model folder of the preset (no real weights exist here), writes a TSV of
``--rows`` questions with ``tools/make_mmbench_sample.py``, and runs ``python -m xtuner_ext.cli
mmbench`` on it in a child process (the console script is not installed on the GPU machine), with
the official settings: dynamic tiles up to 6 + thumbnail, greedy, ``max_new_tokens=100``. Random
weights rarely emit the stop token, so nearly every answer runs to that cap: this is the worst case
of a real model's decoding, whose MMBench answers are a letter and a stop: ``--max-new-tokens 2``
times that length (300 rows in well under a minute on an H200).

Timing comes from watching ``predictions.jsonl`` grow (one flushed line per answered row): time to
the first row (model load + first answer), then steady rows/s over the rows after the first. When
``--budget-s`` runs out the child is killed; the run is resumable, so nothing written is lost.
"""
import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's xtuner_ext, also where another copy is installed


def build_inputs(root: Path, preset: str, rows: int) -> dict:
    """The model folder (kept between runs) and a fresh TSV of ``rows`` questions."""
    from xtuner_ext.models.internvl2.tiny import make_tiny_model

    model_dir, tsv = root / f'model_{preset}', root / f'MMBench_DEV_EN_speed_{rows}.tsv'
    started = time.perf_counter()
    if not model_dir.is_dir():
        make_tiny_model(model_dir, seed=0, preset=preset)
    built = time.perf_counter()
    subprocess.run([sys.executable, str(REPO / 'tools' / 'make_mmbench_sample.py'), str(tsv), '--questions', str(rows)],
                   check=True, env=child_env())
    return dict(model_dir=model_dir, tsv=tsv, build_model_s=round(built - started, 1))


def child_env() -> dict:
    """The children import this checkout's ``xtuner_ext`` (the GPU machine has no installed copy)."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get('PYTHONPATH')) if p)
    return dict(os.environ, PYTHONPATH=path, PYTHONUNBUFFERED='1')


def xlsx_writer_note() -> str:
    """The run ends by writing the .xlsx submission with openpyxl; without it the answers (and so the
    timing) are still there, but the run fails at its end."""
    import importlib.util

    if importlib.util.find_spec('openpyxl') is not None:
        return ''
    return ('openpyxl is missing: the run will fail when it writes the .xlsx (timing is kept); carry it with '
            '`pip download --no-deps -d .carry/whl openpyxl==3.1.5 et_xmlfile==2.0.0`')


def tile_counts(model_dir: Path, tsv: Path, rows: int) -> dict:
    """How many 448-px tiles (thumbnail included) each image becomes under the official tiling."""
    from xtuner_ext.evaluation.mmbench import read_mmbench_tsv
    from xtuner_ext.evaluation.mmbench.answering import OFFICIAL_TILING
    from xtuner_ext.models.internvl2 import InternVL2Processor

    processor = InternVL2Processor.from_pretrained(model_dir, **OFFICIAL_TILING)
    counts = [processor.num_tiles(row.decode_image().size) for row in read_mmbench_tsv(tsv).rows[:rows]]
    return {str(n): counts.count(n) for n in sorted(set(counts))}


def mmbench_command(model_dir: Path, tsv: Path, work_dir: Path, device: str, max_new_tokens: int) -> list:
    return [sys.executable, '-m', 'xtuner_ext.cli', 'mmbench', str(model_dir), '--data-path', str(tsv),
            '--work-dir', str(work_dir), '--device', device, '--max-new-tokens', str(max_new_tokens), '--no-progress']


def watch(child: subprocess.Popen, log: Path, budget_s: float, started: float, every: int) -> list:
    """Seconds since ``started`` at which each answered row appeared; kills the child past the budget."""
    stamps = []
    while True:
        count = log.read_bytes().count(b'\n') if log.is_file() else 0
        now = time.perf_counter() - started
        stamps += [now] * (count - len(stamps))
        if stamps and len(stamps) % every == 0 and stamps[-1] == now:
            print(f'  {len(stamps)} rows after {now:.1f} s', flush=True)
        if child.poll() is not None:
            return stamps
        if now > budget_s:
            child.send_signal(signal.SIGKILL)
            child.wait()
            print(f'  budget of {budget_s:.0f} s spent: stopped after {len(stamps)} rows', flush=True)
            return stamps
        time.sleep(0.02)


def summarize(stamps: list, inputs: dict, tiles: dict, killed: bool, result: dict) -> dict:
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    summary = dict(rows_answered=len(stamps), finished=not killed, build_model_s=inputs['build_model_s'],
                   first_row_s=round(stamps[0], 2) if stamps else None,  # imports, model load, first answer
                   tiles_per_image=tiles)
    if gaps:
        summary.update(steady_rows_per_s=round(len(gaps) / (stamps[-1] - stamps[0]), 3),
                       median_row_s=round(statistics.median(gaps), 3),
                       startup_s=round(stamps[0] - statistics.median(gaps), 2))  # first row less one answer
    if result:
        summary.update(unmatched=result.get('unmatched'), this_run=result.get('this_run'))
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--preset', default='internvl2-2b', help='tiny for a CPU smoke run')
    parser.add_argument('--rows', type=int, default=300, help='questions in the generated TSV')
    parser.add_argument('--root', default='work_dirs/bench_mmbench')
    parser.add_argument('--device', default=None, help='default: cuda if available, else cpu')
    parser.add_argument('--max-new-tokens', type=int, default=100, help='official: 100')
    parser.add_argument('--budget-s', type=float, default=150, help='answering time before the run is stopped')
    parser.add_argument('--out', help='write the summary JSON here too')
    args = parser.parse_args(argv)
    note = xlsx_writer_note()
    print(note or 'openpyxl found', flush=True)
    import torch

    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    root = Path(args.root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    inputs = build_inputs(root, args.preset, args.rows)
    tiles = tile_counts(inputs['model_dir'], inputs['tsv'], args.rows)
    work_dir = root / f'run_{args.preset}_{device}_{time.strftime("%H%M%S")}'
    command = mmbench_command(inputs['model_dir'], inputs['tsv'], work_dir, device, args.max_new_tokens)
    print(f'model built in {inputs["build_model_s"]} s; tiles per image {tiles}\n$ {" ".join(command)}', flush=True)
    started = time.perf_counter()
    errors = root / f'{work_dir.name}.stderr.txt'
    with open(errors, 'w', encoding='utf-8') as stderr:
        child = subprocess.Popen(command, env=child_env(), stderr=stderr)
        stamps = watch(child, work_dir / 'predictions.jsonl', args.budget_s, started, every=max(args.rows // 10, 1))
    killed = child.returncode == -signal.SIGKILL
    failed = child.returncode not in (0, -signal.SIGKILL)
    if failed:
        print(errors.read_text(encoding='utf-8')[-4000:], file=sys.stderr)
        if not stamps:
            return child.returncode or 1
    result_file = work_dir / 'result.json'
    result = json.loads(result_file.read_text(encoding='utf-8')) if result_file.is_file() else {}
    summary = dict(preset=args.preset, device=device, gpu=torch.cuda.get_device_name() if device == 'cuda' else None,
                   max_new_tokens=args.max_new_tokens, **summarize(stamps, inputs, tiles, killed, result),
                   child_exit_code=child.returncode)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + '\n', encoding='utf-8')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
