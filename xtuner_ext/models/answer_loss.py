"""The training loss: mean next-token cross-entropy over answer tokens.

``fused='liger'`` computes the output head and the cross-entropy chunk by chunk with Liger's
fused linear cross-entropy (a Triton kernel, CUDA only), so the ``answer_tokens x vocab`` logits
(92,553 columns for InternLM2; ~10 GB in fp32 for four 6656-token answers) never exist at once.
On the CPU, or with ``fused=None``, the head runs on the answer positions and torch computes the loss.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = -100
FUSED_LOSSES = (None, 'liger')


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
        return LigerFusedLinearCrossEntropyLoss(reduction='sum')(head.weight, inputs, targets, head.bias) / count
    logits = head(inputs).float()
    return F.cross_entropy(logits, targets, reduction='sum') / count
