"""Checks at the start of every training run (``boot.py`` adds this hook to each runner):

- temporary files that a killed checkpoint write left in the work dir are removed (``before_run``);
- a resume with nothing left to train stops with the reason and a non-zero exit (``before_train``),
  instead of training nothing, saving nothing and exiting 0.
"""
import logging

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log

from xtuner_ext.fileio import remove_orphaned_temp_files


class NothingToTrainError(RuntimeError):
    """A resumed run whose checkpoint is already at (or past) the end of the schedule."""


def nothing_to_train_message(checkpoint, done_iters: int, max_iters: int, train_cfg: dict) -> str:
    length = next((key for key in ('max_iters', 'max_epochs') if train_cfg.get(key) is not None), 'max_iters')
    return (f'nothing left to train: the checkpoint {checkpoint} is at iteration {done_iters}, and this config '
            f'trains {max_iters} iterations. Resume from an earlier checkpoint, or train longer: '
            f'--cfg-options train_cfg.{length}=N with N above {train_cfg.get(length, max_iters)}')


class RunStartHook(Hook):
    priority = 'VERY_HIGH'

    def before_run(self, runner) -> None:
        if not is_main_process():  # another node may share the folder; only rank 0 writes checkpoints
            return
        removed = remove_orphaned_temp_files(runner.work_dir)
        if removed:
            print_log(f'removed {len(removed)} temporary file(s) that a killed checkpoint write left in '
                      f'{runner.work_dir}: {", ".join(removed)}', 'current', logging.WARNING)

    def before_train(self, runner) -> None:
        if runner.iter > 0 and runner.iter >= runner.max_iters:  # resumed (a new run starts at 0), nothing left
            checkpoint = getattr(runner, '_load_from', None) or f'in {runner.work_dir}'
            raise NothingToTrainError(nothing_to_train_message(checkpoint, runner.iter, runner.max_iters,
                                                               dict(runner.cfg.get('train_cfg') or {})))
