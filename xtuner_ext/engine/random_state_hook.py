"""Make ``--resume`` replay randomness exactly.

mmengine checkpoints hold weights, optimizer, schedulers and the loop position, but not the RNG
states: after ``--resume``, dropout (LoRA dropout included) draws different masks and the run
drifts from an uninterrupted one. This hook stores the Python, NumPy, torch CPU and CUDA states
in the checkpoint and puts them back right after a resume loads it.

A second leak: to reach the saved data position, mmengine re-creates the dataloader iterator
once per skipped epoch, and each creation draws a seed from torch's global generator. So the
training dataloader gets a generator of its own, seeded from the run's seed.

Exact replay is for single-process runs: a checkpoint is written by rank 0 only, and restoring its
states on every rank would give all ranks the same dropout masks, so with several processes the
saved states are left unused (with a warning) and resume is exact up to dropout.
"""
import logging
import random

import numpy as np
import torch
from mmengine.dist import get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log

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


class RandomStateHook(Hook):
    """Put it in ``custom_hooks`` of any config that is meant to resume exactly."""

    priority = 'VERY_LOW'

    def before_train(self, runner) -> None:
        loader = runner.train_dataloader
        if getattr(loader, 'generator', None) is None:
            loader.generator = torch.Generator().manual_seed(int(runner.seed))

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint[STATE_KEY] = capture_random_state()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get(STATE_KEY)
        if state is None or not getattr(runner, '_resume', False):  # `load_from` starts a new run
            return
        if get_world_size() != 1 or state.get('world_size', 1) != 1:
            print_log('RandomStateHook: random states are replayed for single-process runs only; '
                      'this resume is exact up to dropout masks', 'current', logging.WARNING)
            return
        restore_random_state(state)
