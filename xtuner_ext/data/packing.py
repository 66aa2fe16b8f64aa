"""Padding-free batches: the samples of a micro-batch end to end in one row.

The model attends within each sample only (``xtuner_ext.models.packed_attention``), so the loss
and gradients are those of the same samples right-padded by ``internvl2_collate_fn``; the compute
spent on padding (a CLoT batch of 7/5/3/1-tile memes pads to its 7-tile sample) is gone.
"""
from __future__ import annotations

from typing import List

import torch

from xtuner_ext.data.internvl2_dataset import image_batch_fields
from xtuner_ext.models.internvl2 import IGNORE_INDEX


def internvl2_packed_collate_fn(instances: List[dict]) -> dict:
    """One row: ``input_ids``/``labels``/``position_ids`` [1, total], ``cu_seqlens`` [n + 1].

    A sample's first token is never a target (the padded path never predicts it from the
    previous sample either), and image tiles stay in sample order, as their tokens do.
    """
    lengths = [len(x['input_ids']) for x in instances]
    labels = [x['labels'].clone() for x in instances]
    for sample_labels in labels:
        sample_labels[0] = IGNORE_INDEX
    cu_seqlens = torch.zeros(len(instances) + 1, dtype=torch.int32)
    cu_seqlens[1:] = torch.tensor(lengths).cumsum(0)
    data = dict(input_ids=torch.cat([x['input_ids'] for x in instances])[None], labels=torch.cat(labels)[None],
                position_ids=torch.cat([torch.arange(n) for n in lengths])[None], cu_seqlens=cu_seqlens,
                **image_batch_fields(instances))
    return dict(data=data, data_samples=None)
