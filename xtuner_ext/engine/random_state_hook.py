"""Make ``--resume`` replay randomness exactly.

mmengine checkpoints hold weights, optimizer, schedulers and the loop position, but not the RNG
states: after ``--resume``, dropout (LoRA dropout included) draws different masks and the run
drifts from an uninterrupted one. This hook stores the Python, NumPy, torch CPU and CUDA states
in the checkpoint and puts them back right after a resume loads it.

A second leak: to reach the saved data position, mmengine re-creates the dataloader iterator
once per skipped epoch, and each creation draws a seed from torch's global generator. So the
training dataloader gets a generator of its own, seeded from the run's seed.

Several processes (``NPROC_PER_NODE=N xtuner train``): each rank draws its own dropout masks, and
mmengine writes the checkpoint on rank 0 only, calling ``before_save_checkpoint`` there alone. So every
rank's states are gathered to rank 0 just before each save (the hook wraps ``runner.save_checkpoint``,
which ``CheckpointHook`` calls on every rank) and stored as one list; after a resume each rank takes its
own entry back. The sampler position needs no state of its own: mmengine's loop replays each rank's
seeded sampler (``set_epoch`` per epoch) up to the saved iteration. A resume with another number of
ranks deals the data differently, so the states are then left unused, with a warning.

Under ``--deepspeed`` the same holds: mmengine's DeepSpeed strategy ignores the checkpoint hooks, and
``boot.py`` makes it call them (the states travel in DeepSpeed's client state).
"""
import logging
import random

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log

from xtuner_ext.boot import wrap_once

STATE_KEY = 'random_state'


def capture_random_state() -> dict:
    state = dict(python=random.getstate(), numpy=np.random.get_state(), torch=torch.get_rng_state(),
                 world_size=get_world_size())
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def restore_random_state(state: dict) -> None:
    """mmengine resumes with ``map_location`` = the GPU; the generators take CPU byte tensors."""
    random.setstate(state['python'])
    np.random.set_state(state['numpy'])
    torch.set_rng_state(state['torch'].cpu())
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state['cuda']])


def _gathering_states_before(save_checkpoint, hook):
    """``save_checkpoint`` (rank 0's write) preceded by gathering every rank's states into ``hook``."""

    def save_with_every_rank_state(*args, **kwargs):
        hook.gathered = all_gather_object(capture_random_state())
        try:
            return save_checkpoint(*args, **kwargs)
        finally:
            hook.gathered = None

    return save_with_every_rank_state


class RandomStateHook(Hook):
    """Put it in ``custom_hooks`` of any config that is meant to resume exactly."""

    priority = 'VERY_LOW'

    def __init__(self):
        self.gathered = None  # every rank's states, on rank 0, while a several-rank save runs

    def before_train(self, runner) -> None:
        loader = runner.train_dataloader
        if getattr(loader, 'generator', None) is None:
            loader.generator = torch.Generator().manual_seed(int(runner.seed))
        if get_world_size() > 1:
            wrap_once(runner, 'save_checkpoint', lambda save: _gathering_states_before(save, self))

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self.gathered is not None:
            checkpoint[STATE_KEY] = dict(world_size=len(self.gathered), ranks=self.gathered)
        else:
            checkpoint[STATE_KEY] = capture_random_state()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get(STATE_KEY)
        if state is None or not getattr(runner, '_resume', False):  # `load_from` starts a new run
            return
        saved_ranks = state.get('world_size', 1)
        if saved_ranks != get_world_size():
            print_log(f'RandomStateHook: the checkpoint was saved by {saved_ranks} rank(s) and this run has '
                      f'{get_world_size()}: the data is dealt differently, so the random states are not replayed '
                      f'and this resume is not exact. Resume with NPROC_PER_NODE={saved_ranks} to continue exactly',
                      'current', logging.WARNING)
            return
        restore_random_state(state['ranks'][get_rank()] if 'ranks' in state else state)
