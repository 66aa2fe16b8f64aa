"""The MMBench step of ``make demo``: the embedded sample TSV, base model vs the demo's fine-tune.

Quick settings (one tile per image, 8 new tokens) keep it to about a minute on a 2-core CPU; the
tiny random model rarely answers with a letter, so expect most rows "unmatched": the step shows
the workflow (files, table, deltas), not a benchmark score.
"""
from __future__ import annotations

from pathlib import Path

from .cli import main as mmbench_main
from .sample import make_mmbench_sample

QUICK = ['--no-dynamic', '--max-new-tokens', '8', '--device', 'cpu', '--no-progress']


def demo_before_after(model_dir: Path, config: Path, checkpoint: Path, embedded: Path, work_dir: Path) -> int:
    """Write ``embedded/MMBench_sample/MMBench_DEV_EN_sample.tsv`` once, then run
    ``xtuner-ext mmbench MODEL --compare CONFIG --compare-checkpoint PTH`` on it into ``work_dir``."""
    tsv = Path(embedded) / 'MMBench_sample' / 'MMBench_DEV_EN_sample.tsv'
    if not tsv.is_file():
        make_mmbench_sample(tsv)
    print(f'\nMMBench before/after on {tsv} (command: xtuner-ext mmbench {model_dir} --compare {config} '
          f'--compare-checkpoint {checkpoint} --data-path {tsv} --work-dir {work_dir} {" ".join(QUICK)})')
    return mmbench_main([str(model_dir), '--compare', str(config), '--compare-checkpoint', str(checkpoint),
                         '--data-path', str(tsv), '--work-dir', str(work_dir), *QUICK])
