"""XTuner's ``TrainLoop`` with an iteration cap for short runs: ``--cfg-options train_cfg.iter_cap=3``.

Stock ``max_iters`` cannot replace ``max_epochs`` from the command line (XTuner refuses both at
once, and the warm-up, computed from the full run, then ends after the run). The cap keeps the
configured run and squeezes its whole learning-rate schedule into the capped iterations, so a
smoke test sees warm-up and decay in proportion, ending where the full run would.

Every schedule is rewritten in iterations with at least one iteration per scheduler, capped or
not: mmengine rounds an epoch-based warm-up (``0.03 x epochs``) of a small data set down to zero
iterations and then refuses it ("end should be larger than begin").
"""
from __future__ import annotations

import copy
import math
from typing import Optional

from xtuner.engine.runner import TrainLoop


class CappedTrainLoop(TrainLoop):
    """Args (besides stock ``TrainLoop``'s):
        iter_cap: stop after this many iterations (None: the configured run)."""

    def __init__(self, runner, dataloader, max_iters=None, max_epochs=None, iter_cap: Optional[int] = None, **kwargs):
        super().__init__(runner, dataloader, max_iters=max_iters, max_epochs=max_epochs, **kwargs)
        if iter_cap is not None and (int(iter_cap) != iter_cap or iter_cap < 1):
            raise ValueError(f'train_cfg.iter_cap must be a whole number >= 1, got {iter_cap!r}')
        cap = self._max_iters if iter_cap is None else min(int(iter_cap), self._max_iters)
        runner.param_schedulers = squeeze_schedules(runner.param_schedulers, self._max_iters, cap,
                                                    len(self.dataloader))
        if cap < self._max_iters:
            self._max_iters = cap
            self._max_epochs = math.ceil(cap / len(self.dataloader))


def squeeze_schedules(schedules, full_iters: int, cap: int, epoch_length: int):
    """Scheduler configs of a ``full_iters`` run rewritten in iterations for a ``cap``-iteration run."""
    if schedules is None:
        return None
    if isinstance(schedules, dict) and 'type' not in schedules:  # one list per optimizer
        return {k: squeeze_schedules(v, full_iters, cap, epoch_length) for k, v in schedules.items()}
    if isinstance(schedules, dict):
        schedules = [schedules]
    return [_squeeze(cfg, cap / full_iters, epoch_length) for cfg in schedules]


def _squeeze(cfg: dict, factor: float, epoch_length: int) -> dict:
    if not isinstance(cfg, dict):
        raise TypeError(f'train_cfg.iter_cap needs param_scheduler configs as dicts, got a built {type(cfg).__name__}')
    cfg = copy.deepcopy(cfg)
    unit = epoch_length if cfg.get('by_epoch', True) else 1  # mmengine schedulers count epochs by default
    begin = math.floor(cfg.get('begin', 0) * unit * factor)
    cfg.update(by_epoch=False, convert_to_iter_based=False, begin=begin)
    if 'end' in cfg:
        cfg['end'] = max(begin + 1, math.ceil(cfg['end'] * unit * factor))
    return cfg
