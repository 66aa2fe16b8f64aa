"""The training loss: mean next-token cross-entropy over answer tokens.

``fused='liger'`` computes the output head and the cross-entropy chunk by chunk with Liger's
fused linear cross-entropy (a Triton kernel, CUDA only), so the ``answer_tokens x vocab`` logits
(92,553 columns for InternLM2; ~10 GB in fp32 for four 6656-token answers) never exist at once.
On the CPU, or with ``fused=None``, the head runs on the answer positions and torch computes the loss.

The fused path hands Liger the head padded to a multiple of :data:`HEAD_ROWS_MULTIPLE` rows: an odd
vocabulary (InternLM2 92,553, Qwen2 151,655) makes every logits row misaligned for cuBLAS, which then
falls back to an sm75 GEMM at ~1/5 of the H200's speed (half of the loss's time on four 6656-token
answers). The extra rows are zeros with a bias of the dtype's lowest value, so their logits vanish
from the softmax (exp underflows to exactly 0): same loss, same gradients.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = -100
FUSED_LOSSES = (None, 'liger')
HEAD_ROWS_MULTIPLE = 128  # rows of the padded head the fused loss sees (1: unpadded, as the bench compares)


def check_fused_loss(fused: Optional[str], head: nn.Module) -> None:
    if fused not in FUSED_LOSSES:
        raise ValueError(f'fused_loss must be one of {FUSED_LOSSES}, got {fused!r}')
    if fused and type(head) is not nn.Linear:
        raise ValueError(f"fused_loss='liger' needs a plain nn.Linear output head, got {type(head).__name__}: keep "
                         "'lm_head' in quantization_llm.skip_modules and out of LoRA target_modules")
    if fused:
        import liger_kernel  # noqa: F401  (fail at build time, not at the first step)


def answer_loss(hidden: torch.Tensor, labels: torch.Tensor, head: nn.Linear, fused: Optional[str] = None) -> torch.Tensor:
    """``hidden`` [B, T, H] predicts ``labels`` [B, T] shifted by one. A batch whose answers were all
    truncated away gives 0 (with a graph), not NaN."""
    targets = labels[:, 1:]
    answer = targets != IGNORE_INDEX
    inputs, targets = hidden[:, :-1][answer], targets[answer]
    count = answer.sum().clamp(min=1)
    if fused == 'liger' and inputs.is_cuda and targets.numel():
        from liger_kernel.transformers.fused_linear_cross_entropy import LigerFusedLinearCrossEntropyLoss

        inputs = inputs.to(head.weight.dtype)  # autocast does not reach inside the Triton kernel
        weight, bias = aligned_head(head.weight, head.bias, HEAD_ROWS_MULTIPLE)
        return LigerFusedLinearCrossEntropyLoss(reduction='sum')(weight, inputs, targets, bias) / count
    logits = head(inputs).float()
    return F.cross_entropy(logits, targets, reduction='sum') / count


def aligned_head(weight: torch.Tensor, bias: Optional[torch.Tensor], multiple: int):
    """``weight`` [V, H] and ``bias`` padded to a multiple of ``multiple`` rows whose logits are the
    dtype's lowest value (softmax weight exactly 0); unchanged when already aligned. A new tensor each
    call (a copy of the head per micro-batch: 379 MB for InternLM2's in bf16); a trainable head's
    real rows still get their gradients through the concatenation."""
    pad = -weight.shape[0] % multiple
    if not pad:
        return weight, bias
    weight = torch.cat([weight, weight.new_zeros(pad, weight.shape[1])])
    real = bias.to(weight.dtype) if bias is not None else weight.new_zeros(weight.shape[0] - pad)
    bias = torch.cat([real, real.new_full((pad,), torch.finfo(weight.dtype).min)])
    return weight, bias
