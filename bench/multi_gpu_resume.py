"""Kill-and-resume with several ranks, compared with an uninterrupted run (prints one JSON object).

    python bench/multi_gpu_resume.py --ranks 2 --preset internvl2-2b --deepspeed deepspeed_zero2   # GPUs
    OMP_NUM_THREADS=1 python bench/multi_gpu_resume.py --ranks 2 --preset tiny env_cfg.dist_cfg.backend=gloo

Three `NPROC_PER_NODE=N xtuner train` runs of ITERS iterations with a checkpoint every ITERS/2: one
uninterrupted; one killed (SIGKILL to xtuner, torchrun and every rank) once the middle checkpoint exists; the
killed one resumed with `resume=True` (mmengine follows work_dir/last_checkpoint). Reports the largest
difference between the final trainable tensors of the resumed and the uninterrupted runs (0.0 = exact).
Random weights of the preset's architecture (bench/train_step.py builds them); the tests run the same
check on the CPU (tests/e2e/test_multi_rank.py).
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'bench'))
from train_step import CONFIGS, prepare  # noqa: E402  (the benchmark's model and data builder)


def command(args, work_dir: Path) -> list:
    return [sys.executable, '-m', 'xtuner_ext.cli', 'train', str(REPO / 'configs' / 'internvl' / CONFIGS[args.preset]),
            '--work-dir', str(work_dir), *(['--deepspeed', args.deepspeed] if args.deepspeed else []),
            '--cfg-options', f'train_cfg.iter_cap={args.iters}', f'default_hooks.checkpoint.interval={args.iters // 2}',
            'default_hooks.checkpoint.max_keep_ckpts=3', *args.cfg_options]


def run_env(args, paths: dict) -> dict:
    from xtuner_ext.distributed import free_port
    return dict(os.environ, XTUNER_EXT_MODEL_PATH=paths['model_dir'], XTUNER_EXT_DATA_ROOT=paths['data_dir'],
                NPROC_PER_NODE=str(args.ranks), PORT=str(free_port()))


def run(args, paths: dict, work_dir: Path, *extra: str) -> float:
    started = time.time()
    with open(f'{work_dir}.log', 'a') as log:
        code = subprocess.run(command(args, work_dir) + list(extra), env=run_env(args, paths), stdout=log,
                              stderr=subprocess.STDOUT).returncode
    if code:
        raise SystemExit(f'training failed with exit code {code}: see {work_dir}.log')
    return round(time.time() - started, 1)


def run_and_kill(args, paths: dict, work_dir: Path) -> None:
    middle = work_dir / f'iter_{args.iters // 2}.pth'
    with open(f'{work_dir}.log', 'a') as log:
        process = subprocess.Popen(command(args, work_dir), env=run_env(args, paths), stdout=log,
                                   stderr=subprocess.STDOUT)
        while not (work_dir / 'last_checkpoint').exists() or not middle.exists():
            if process.poll() is not None:
                raise SystemExit(f'the run ended before its middle checkpoint: see {work_dir}.log')
            time.sleep(0.1)
        kill_with_descendants(process.pid)  # torchrun starts its ranks in sessions of their own
        process.wait()


def kill_with_descendants(pid: int) -> None:
    """SIGKILL to xtuner, torchrun and every rank at once (torchrun starts its ranks in sessions of their own,
    so a process-group kill would leave them running)."""
    import psutil
    parent = psutil.Process(pid)
    for process in [parent, *parent.children(recursive=True)]:
        try:
            process.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass


def largest_difference(first: Path, second: Path) -> float:
    from xtuner_ext.convert.trained_state import read_trained_state  # iter_N.pth or a DeepSpeed folder
    a, b = read_trained_state(first), read_trained_state(second)
    if a.keys() != b.keys():
        raise SystemExit(f'{first} and {second} hold different tensors')
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--ranks', type=int, default=2)
    parser.add_argument('--preset', choices=sorted(CONFIGS), default='tiny')
    parser.add_argument('--deepspeed', help='e.g. deepspeed_zero2')
    parser.add_argument('--iters', type=int, default=8)
    parser.add_argument('--root', default='work_dirs/multi_gpu_resume')
    parser.add_argument('cfg_options', nargs='*', help='extra --cfg-options KEY=VALUE')
    args = parser.parse_args(argv)
    root = Path(args.root).resolve()
    paths = prepare(root, args.preset)
    uninterrupted, killed = root / 'uninterrupted', root / 'killed'
    wall = run(args, paths, uninterrupted)
    run_and_kill(args, paths, killed)
    resumed_wall = run(args, paths, killed, 'resume=True')
    final = f'iter_{args.iters}.pth'
    print(json.dumps(dict(ranks=args.ranks, preset=args.preset, deepspeed=args.deepspeed, iters=args.iters,
                          uninterrupted_wall_s=wall, resumed_wall_s=resumed_wall,
                          max_abs_difference=largest_difference(uninterrupted / final, killed / final))))
    return 0


if __name__ == '__main__':
    sys.exit(main())
