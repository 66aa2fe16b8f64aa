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


TWO_RANK_SCRIPT = '''
import random, sys
from types import SimpleNamespace
import numpy as np, torch
import xtuner_ext
from mmengine.dist import all_gather_object, barrier, get_rank, init_dist, master_only
from mmengine.runner.checkpoint import _load_checkpoint
from xtuner_ext.engine.random_state_hook import RandomStateHook

init_dist('pytorch', backend='gloo')
rank, path = get_rank(), sys.argv[1]
random.seed(rank); np.random.seed(rank); torch.manual_seed(rank)  # each rank its own streams
hook = RandomStateHook()

@master_only  # as mmengine's Runner.save_checkpoint: CheckpointHook calls it on every rank, rank 0 writes
def save_checkpoint():
    checkpoint = {'meta': {}}
    hook.before_save_checkpoint(runner, checkpoint)
    torch.save(checkpoint, path)

def draw():
    return (random.random(), np.random.rand(2).tolist(), torch.nn.functional.dropout(torch.ones(8), 0.5).tolist())

runner = SimpleNamespace(seed=rank, train_dataloader=SimpleNamespace(generator=None), _resume=True,
                         save_checkpoint=save_checkpoint)
hook.before_train(runner)
runner.save_checkpoint()
barrier()
expected = draw()
draw()
hook.after_load_checkpoint(runner, _load_checkpoint(path, map_location='cpu'))
result = all_gather_object((draw() == expected, expected))
if rank == 0:
    print('result', result, flush=True)
torch.distributed.destroy_process_group()  # a gloo group left at exit can abort the process
'''


def test_every_rank_gets_its_own_states_back(tmp_path):
    """2 gloo ranks under torchrun: one checkpoint (rank 0 writes it) gives each rank its own streams back."""
    import ast
    import os
    import subprocess
    import sys

    from xtuner_ext.distributed import free_port

    script = tmp_path / 'two_ranks.py'
    script.write_text(TWO_RANK_SCRIPT, encoding='utf-8')
    result = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
                             f'--master_port={free_port()}', str(script), str(tmp_path / 'iter_1.pth')],
                            env=dict(os.environ, OMP_NUM_THREADS='1'), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith('result'))
    (replayed_0, draws_0), (replayed_1, draws_1) = ast.literal_eval(line[len('result '):])
    assert replayed_0 and replayed_1
    assert draws_0 != draws_1  # the ranks' streams differ: one shared state could not have replayed both


def test_a_resume_with_another_number_of_ranks_does_not_replay():
    two_ranks = dict(world_size=2, ranks=[capture_random_state(), capture_random_state()])
    expected = draw()
    RandomStateHook().after_load_checkpoint(SimpleNamespace(_resume=True), {STATE_KEY: two_ranks})
    assert draw() != expected
