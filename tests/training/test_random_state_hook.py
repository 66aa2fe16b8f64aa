"""RandomStateHook: RNG states captured with a checkpoint come back exactly after a resume load."""
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import xtuner_ext  # noqa: F401  (installs the boot patch that lets mmengine load its checkpoints)
from xtuner_ext.engine.random_state_hook import (STATE_KEY, RandomStateHook, capture_random_state,
                                                 restore_random_state)


def draw():
    return (random.random(), random.getrandbits(64), np.random.rand(3).tolist(), torch.rand(4).tolist(),
            torch.randint(0, 1000, (4,)).tolist(), torch.nn.functional.dropout(torch.ones(16), 0.5).tolist())


def test_capture_restore_replays_the_same_numbers():
    state = capture_random_state()
    first = draw()
    draw()  # move on
    restore_random_state(state)
    assert draw() == first
    assert draw() != first  # the generators really advance: the equality above is not vacuous


def test_state_survives_torch_save_and_mmengine_load(tmp_path):
    from mmengine.runner.checkpoint import _load_checkpoint

    hook = RandomStateHook()
    checkpoint = {'meta': {'iter': 3}, 'state_dict': {'w': torch.ones(2)}}
    hook.before_save_checkpoint(None, checkpoint)
    assert set(checkpoint[STATE_KEY]) >= {'python', 'numpy', 'torch'}
    expected = draw()
    path = tmp_path / 'iter_3.pth'
    torch.save(checkpoint, path)
    draw()
    loaded = _load_checkpoint(str(path), map_location='cpu')  # torch.load with its weights_only default
    hook.after_load_checkpoint(SimpleNamespace(_resume=False), loaded)  # `load_from`: a new run
    assert draw() != expected
    hook.after_load_checkpoint(SimpleNamespace(_resume=True), loaded)  # `--resume`
    assert draw() == expected


def test_plain_weights_only_load_needs_the_patch(tmp_path):
    """The numpy state is what torch's weights_only loader refuses without the boot patch."""
    path = tmp_path / 'state.pth'
    torch.save({STATE_KEY: capture_random_state()}, path)
    with pytest.raises(Exception, match='Weights only load failed'):
        torch.load(path, weights_only=True)


def test_checkpoint_without_state_leaves_generators_alone():
    state = capture_random_state()
    expected = draw()
    restore_random_state(state)
    RandomStateHook().after_load_checkpoint(SimpleNamespace(_resume=True), {'meta': {}})
    assert draw() == expected
