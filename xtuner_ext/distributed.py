"""Process-group start-up where stock mmengine and DeepSpeed assume a GPU or an MPI launcher.

- ``torchrun`` on a machine without CUDA (the CPU tests, ``env_cfg.dist_cfg.backend='gloo'``): mmengine's
  pytorch launcher calls ``torch.cuda.set_device(LOCAL_RANK)`` before it joins the group, which fails there.
  ``init_dist_pytorch_on_cpu`` joins the group without it (``boot.py`` routes mmengine's call through it),
  and refuses several DeepSpeed ranks at once, with the reason, instead of after the model is built. It also
  leaves that group before the interpreter shuts down (``leave_process_group``), so no gloo thread outlives it.
- ``xtuner train CONFIG --deepspeed ...`` as one plain process: DeepSpeed finds none of torchrun's variables
  and goes looking for MPI (``mpi4py``, which the stack does not ship). ``single_process_rendezvous`` gives it
  the one-process group torchrun would have described (rank 0 of 1, a free local port).
"""
import atexit
import gc
import os
import socket

import torch

# Seen with DeepSpeed 0.18.9, torch 2.14 and ZeRO-2 (ZeRO-1 runs the same step; ZeRO-3 was not tried on the CPU).
SEVERAL_CPU_RANKS_UNDER_DEEPSPEED = (
    'DeepSpeed cannot train several ranks without CUDA: its ZeRO step gathers the partitions with '
    'all_gather_into_tensor, which fails under gloo ("Output 0 of Split is a view and is being modified '
    'inplace"). On the CPU, train several ranks without --deepspeed (plain DDP), or --deepspeed in one process')
RENDEZVOUS_VARIABLES = ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT')


def init_dist_pytorch_on_cpu(stock_init):
    """mmengine's ``_init_dist_pytorch`` unchanged where CUDA exists; without CUDA the same group, no device."""

    def init(backend, init_backend='torch', **kwargs):
        if torch.cuda.is_available():
            return stock_init(backend, init_backend=init_backend, **kwargs)
        if backend != 'gloo':
            raise RuntimeError(f'no CUDA device here, so the {backend!r} process-group backend cannot run: on CPU '
                               "train with --cfg-options env_cfg.dist_cfg.backend=gloo")
        if init_backend == 'deepspeed':
            if int(os.environ.get('WORLD_SIZE', '1')) > 1:
                raise RuntimeError(SEVERAL_CPU_RANKS_UNDER_DEEPSPEED)
            import deepspeed
            return deepspeed.init_distributed(dist_backend=backend, **kwargs)
        torch.distributed.init_process_group(backend=backend, **kwargs)
        atexit.register(leave_process_group)

    return init


def leave_process_group() -> None:
    """Destroy the group while the interpreter still runs, which joins gloo's worker threads.

    A worker that finishes a collective drops the last reference to its tensors; a tensor made in Python
    (``all_gather_object``'s buffers) then needs the GIL. Once interpreter shutdown has begun, taking the GIL
    ends the thread, which aborts the process ("terminate called without an active exception"): a rank that
    had trained and saved exited with SIGABRT in about 1 of 6 two-rank test runs. ``destroy_process_group``
    alone does not join the workers: the DDP model, kept by reference cycles, still holds the group, hence
    the collection first (measured: the workers are gone after both, still there after the destroy alone).
    """
    gc.collect()
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def single_process_rendezvous() -> None:
    """Describe a one-process group in the environment, unless a launcher already described one (``RANK`` and
    ``WORLD_SIZE``); XTuner's train tool sets ``LOCAL_RANK=0`` itself, so that one alone does not count."""
    if torch.distributed.is_initialized() or ('RANK' in os.environ and 'WORLD_SIZE' in os.environ):
        return
    defaults = dict(RANK='0', WORLD_SIZE='1', LOCAL_RANK='0', MASTER_ADDR='127.0.0.1')
    for name, value in defaults.items():
        os.environ.setdefault(name, value)
    os.environ.setdefault('MASTER_PORT', str(free_port()))
