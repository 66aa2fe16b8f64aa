"""Causal attention forward + backward at the InternLM2-1.8B head shape, per kernel torch offers here:
which one a long-sample step should use.

    python bench/attention_kernels.py --lengths 6656 6656 6656 6656 --out $OUT/attention.json

Rows: torch's varlen flash over one packed row of all samples; and one SDPA call per sample with
each SDPA backend (flash, cuDNN, memory-efficient), keys/values repeated to the query heads as
transformers does. TFLOP/s counts the causal half of QK^T and PV, forward (x1) and backward (x2.5).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from xtuner_ext.fileio import write_atomically  # noqa: E402
from xtuner_ext.models.packed_attention import PackedRow, _varlen_attention  # noqa: E402


def timed(function, repeats: int) -> float:
    function()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def kernels(lengths, heads: int, kv_heads: int, head_dim: int):
    """name -> a function running forward + backward once."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    total, groups = sum(lengths), heads // kv_heads
    q = torch.randn(1, heads, total, head_dim, device='cuda', dtype=torch.bfloat16, requires_grad=True)
    k, v = (torch.randn(1, kv_heads, total, head_dim, device='cuda', dtype=torch.bfloat16, requires_grad=True)
            for _ in range(2))
    row = PackedRow.from_cu_seqlens(torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()]), q.device)
    grad = torch.randn(1, total, heads, head_dim, device='cuda', dtype=torch.bfloat16)

    def varlen():
        torch.autograd.backward(_varlen_attention(q, k, v, row, groups, head_dim ** -0.5), grad)

    def per_sample(backend, gqa=False):
        def run():
            with sdpa_kernel(backend):
                parts = [F.scaled_dot_product_attention(a, b, c, is_causal=True, enable_gqa=True) if gqa else
                         F.scaled_dot_product_attention(a, b.repeat_interleave(groups, 1), c.repeat_interleave(groups, 1),
                                                        is_causal=True)
                         for a, b, c in zip(q.split(lengths, 2), k.split(lengths, 2), v.split(lengths, 2))]
            torch.autograd.backward(torch.cat(parts, 2).transpose(1, 2), grad)
        return run

    return {'varlen flash (packed row)': varlen, 'SDPA flash per sample': per_sample(SDPBackend.FLASH_ATTENTION),
            'SDPA cuDNN per sample': per_sample(SDPBackend.CUDNN_ATTENTION),
            'SDPA cuDNN per sample, enable_gqa': per_sample(SDPBackend.CUDNN_ATTENTION, gqa=True),
            'SDPA memory-efficient per sample': per_sample(SDPBackend.EFFICIENT_ATTENTION)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--lengths', type=int, nargs='+', default=[6656] * 4)
    parser.add_argument('--heads', type=int, default=16)
    parser.add_argument('--kv-heads', type=int, default=8)
    parser.add_argument('--head-dim', type=int, default=128)
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--out', required=True)
    args = parser.parse_args(argv)
    flop = sum(4 * n * n * args.heads * args.head_dim / 2 for n in args.lengths) * 3.5
    rows = []
    for name, run in kernels(args.lengths, args.heads, args.kv_heads, args.head_dim).items():
        try:
            seconds = timed(run, args.repeats)
            rows.append(dict(kernel=name, ms=round(seconds * 1e3, 2), tflops=round(flop / seconds / 1e12, 1)))
        except Exception as err:  # noqa: BLE001  (a backend this GPU/torch lacks is a row, not a crash)
            rows.append(dict(kernel=name, error=f'{type(err).__name__}: {err}'[:300]))
        print(json.dumps(rows[-1]), flush=True)
    write_atomically(Path(args.out), json.dumps(dict(lengths=args.lengths, rows=rows), indent=1).encode('utf-8'))
    return 0


if __name__ == '__main__':
    sys.exit(main())
