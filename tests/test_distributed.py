"""Process groups where stock code assumes CUDA or MPI, and the `last_checkpoint` pointer written atomically."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import xtuner_ext  # noqa: F401  (installs the boot patches)
from xtuner_ext.distributed import RENDEZVOUS_VARIABLES, single_process_rendezvous


def test_one_plain_process_gets_a_one_rank_group(monkeypatch):
    for name in RENDEZVOUS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    single_process_rendezvous()
    assert (os.environ['RANK'], os.environ['WORLD_SIZE'], os.environ['LOCAL_RANK']) == ('0', '1', '0')
    assert int(os.environ['MASTER_PORT']) > 0


def test_xtuners_own_local_rank_is_kept(monkeypatch):
    for name in RENDEZVOUS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv('LOCAL_RANK', '0')  # xtuner's train tool sets it in every process
    monkeypatch.setenv('MASTER_PORT', '29511')
    single_process_rendezvous()
    assert (os.environ['RANK'], os.environ['WORLD_SIZE'], os.environ['MASTER_PORT']) == ('0', '1', '29511')


def test_a_launchers_group_is_left_alone(monkeypatch):
    for name in RENDEZVOUS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv('RANK', '3')
    monkeypatch.setenv('WORLD_SIZE', '4')
    single_process_rendezvous()
    assert os.environ['RANK'] == '3' and 'MASTER_ADDR' not in os.environ


@pytest.mark.skipif(__import__('torch').cuda.is_available(), reason='the CPU path only')
def test_nccl_without_cuda_says_to_use_gloo():
    from mmengine.dist import utils
    with pytest.raises(RuntimeError, match=r"no CUDA device here, so the 'nccl' .* env_cfg.dist_cfg.backend=gloo"):
        utils._init_dist_pytorch('nccl')


@pytest.mark.skipif(__import__('torch').cuda.is_available(), reason='the CPU path only')
def test_several_deepspeed_ranks_without_cuda_are_refused_with_the_reason(monkeypatch):
    from mmengine.dist import utils
    monkeypatch.setenv('WORLD_SIZE', '2')
    with pytest.raises(RuntimeError, match=r'DeepSpeed cannot train several ranks without CUDA: .*without --deepspeed \(plain DDP\)'):
        utils._init_dist_pytorch('gloo', init_backend='deepspeed')


def test_torchrun_ranks_join_a_gloo_group_on_cpu(tmp_path):
    """mmengine's own `init_dist('pytorch')` under torchrun, 2 ranks, on a machine without CUDA."""
    from xtuner_ext.distributed import free_port
    script = tmp_path / 'join.py'
    script.write_text('import xtuner_ext, torch\n'
                      'from mmengine.dist import init_dist, all_gather_object, get_rank\n'
                      "init_dist('pytorch', backend='gloo')\n"
                      'ranks = all_gather_object(get_rank())\n'
                      'if get_rank() == 0:\n'
                      '    print("ranks", ranks, flush=True)\n'
                      'torch.distributed.destroy_process_group()\n', encoding='utf-8')
    result = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
                             f'--master_port={free_port()}', str(script)],
                            env=dict(os.environ, OMP_NUM_THREADS='1'), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'ranks [0, 1]' in result.stdout  # gathered from both ranks (printed by rank 0: one shared pipe)


GLOO_WORKERS = """
import atexit
from gloo_workers_at_exit import gloo_workers  # its exit handler, registered first, runs last
import torch, xtuner_ext
from mmengine.dist import all_gather_object, init_dist
init_dist('pytorch', backend='gloo')  # registers the group's leaving
cycle = {'group': torch.distributed.group.WORLD}  # as the runner's objects hold the DDP model and its group:
cycle['self'] = cycle  # in a reference cycle, which only a collection frees
all_gather_object('state')
del cycle
atexit.register(lambda: print('gloo workers at the first exit handler:', gloo_workers(), flush=True))
"""


@pytest.mark.skipif(__import__('torch').cuda.is_available(), reason='the CPU path only')
def test_a_cpu_rank_leaves_its_group_before_interpreter_shutdown(tmp_path):
    """gloo's worker threads must be joined before shutdown: one that finishes a collective after it began aborts
    the rank (see ``leave_process_group``). Without the collection there, the two workers were still running.
    The 2-rank training runs in tests/e2e/test_multi_rank.py check the same at the end of ``xtuner train``."""
    from xtuner_ext.distributed import free_port
    script = tmp_path / 'leave.py'
    script.write_text(GLOO_WORKERS, encoding='utf-8')
    e2e = Path(__file__).resolve().parent / 'e2e'  # gloo_workers_at_exit, as the 2-rank runs import it
    env = dict(os.environ, RANK='0', WORLD_SIZE='1', LOCAL_RANK='0', MASTER_ADDR='127.0.0.1',
               MASTER_PORT=str(free_port()), OMP_NUM_THREADS='1',
               PYTHONPATH=os.pathsep.join(filter(None, [str(e2e), os.environ.get('PYTHONPATH')])))
    result = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    at_exit = [int(n) for n in re.findall(r'gloo workers at the first exit handler: (\d+)', result.stdout)]
    at_the_end = [int(n) for n in re.findall(r'gloo workers left at exit: (\d+)', result.stderr)]
    assert len(at_exit) == 1 and at_exit[0] >= 1 and at_the_end == [0], (result.stdout, result.stderr[-3000:])


def test_last_checkpoint_pointer_is_written_atomically(tmp_path):
    from mmengine.hooks import checkpoint_hook
    pointer = tmp_path / 'last_checkpoint'
    pointer.write_text('work/iter_2.pth')
    with pytest.raises(KeyboardInterrupt):  # a stop in the middle of the stock `with open(...) as f` block
        with checkpoint_hook.open(pointer, 'w') as f:
            f.write('work/iter_')
            raise KeyboardInterrupt
    assert pointer.read_text() == 'work/iter_2.pth'
    with checkpoint_hook.open(pointer, 'w') as f:
        f.write('work/iter_4.pth')
    assert pointer.read_text() == 'work/iter_4.pth' and [p.name for p in tmp_path.iterdir()] == ['last_checkpoint']
    with checkpoint_hook.open(pointer) as f:  # reads are the builtin open's
        assert f.read() == 'work/iter_4.pth'


def test_stock_checkpoint_hook_writes_the_pointer_through_the_patched_open():
    """The patch relies on `CheckpointHook` writing the pointer with the module's `open`, and nothing else."""
    from mmengine.hooks import checkpoint_hook
    source = Path(checkpoint_hook.__file__).read_text(encoding='utf-8')
    assert source.count('open(') == 1 and "with open(save_file, 'w') as f:" in source


SAMPLER_SCRIPT = '''
import sys
import torch
import xtuner_ext
from mmengine.dist import all_gather_object, get_rank, init_dist
from xtuner.dataset.samplers import LengthGroupedSampler

class Records:  # what the sampler reads of the training dataset: its size and each record's length
    modality_length = [(-1) ** i * (50 + 7 * i % 23) for i in range(int(sys.argv[1]))]  # text-only < 0
    def __len__(self):
        return len(self.modality_length)

init_dist('pytorch', backend='gloo')
sampler = LengthGroupedSampler(Records(), per_device_batch_size=2, length_property='modality_length')
epochs = []
for epoch in range(2):
    sampler.set_epoch(epoch)
    epochs.append(all_gather_object(list(sampler)))
if get_rank() == 0:
    print('shares', epochs)
torch.distributed.destroy_process_group()  # a gloo group left at exit can abort the process
'''


def test_each_rank_sees_its_share_of_the_data_once_per_epoch(tmp_path):
    """The shipped configs' sampler (XTuner's LengthGroupedSampler) under 2 real gloo ranks."""
    import ast
    from xtuner_ext.distributed import free_port
    script = tmp_path / 'shares.py'
    script.write_text(SAMPLER_SCRIPT, encoding='utf-8')
    records = 40
    result = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
                             f'--master_port={free_port()}', str(script), str(records)],
                            env=dict(os.environ, OMP_NUM_THREADS='1'), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    epochs = ast.literal_eval(next(line for line in result.stdout.splitlines() if line.startswith('shares'))[7:])
    for rank_0, rank_1 in epochs:
        assert len(rank_0) == len(rank_1) == records // 2
        assert sorted(rank_0 + rank_1) == list(range(records))  # every record once, on one rank
    assert epochs[0] != epochs[1]  # set_epoch reshuffles
