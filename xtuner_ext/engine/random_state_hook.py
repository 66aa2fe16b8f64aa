"""Make ``--resume`` replay randomness exactly.

mmengine checkpoints hold weights, optimizer, schedulers and the loop position, but not the RNG
states: after ``--resume``, dropout (LoRA dropout included) draws different masks and the run
drifts from an uninterrupted one. This hook stores the Python, NumPy, torch CPU and CUDA states
in the checkpoint and puts them back right after a resume loads it.

A second leak: to reach the saved data position, mmengine re-creates the dataloader iterator
once per skipped epoch, and each creation draws a seed from torch's global generator. So the
training dataloader gets a generator of its own, seeded from the run's seed.
"""
import random

import numpy as np
import torch
from mmengine.hooks import Hook

STATE_KEY = 'random_state'


def capture_random_state() -> dict:
    state = dict(python=random.getstate(), numpy=np.random.get_state(), torch=torch.get_rng_state())
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def restore_random_state(state: dict) -> None:
    random.setstate(state['python'])
    np.random.set_state(state['numpy'])
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


class RandomStateHook(Hook):
    """Put it in ``custom_hooks`` of any config that is meant to resume exactly."""

    priority = 'VERY_LOW'  # save after every other hook has drawn its random numbers

    def before_train(self, runner) -> None:
        loader = runner.train_dataloader
        if getattr(loader, 'generator', None) is None:
            loader.generator = torch.Generator().manual_seed(int(runner.seed))

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint[STATE_KEY] = capture_random_state()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if STATE_KEY in checkpoint:
            restore_random_state(checkpoint[STATE_KEY])
