"""EpochChainBatchSampler gives the batches of torch's BatchSampler epoch after epoch (the sampler
re-seeded per epoch as mmengine's loop does), short last batches included, and one epoch's length."""
import itertools

import pytest
from torch.utils.data import BatchSampler
from xtuner.dataset.samplers import LengthGroupedSampler

from xtuner_ext.data.batch_sampler import EpochChainBatchSampler


class _Lengths:
    """What LengthGroupedSampler reads: a dataset with a length property."""

    def __init__(self, lengths):
        self.modality_length = lengths

    def __len__(self):
        return len(self.modality_length)


def _grouped(count, batch):
    lengths = [(i * 37) % 101 + 1 if i % 3 else -((i * 11) % 53 + 1) for i in range(count)]
    return LengthGroupedSampler(_Lengths(lengths), per_device_batch_size=batch, length_property='modality_length',
                                seed=7)


@pytest.mark.parametrize('count, batch, drop_last', [(22, 4, False), (24, 4, False), (22, 4, True)])
def test_batches_are_the_per_epoch_batches_back_to_back(count, batch, drop_last):
    chained = EpochChainBatchSampler(_grouped(count, batch), batch, drop_last)
    reference = _grouped(count, batch)
    expected = []
    for epoch in range(3):
        reference.set_epoch(epoch)
        expected += list(BatchSampler(reference, batch, drop_last))
    assert len(chained) == len(BatchSampler(reference, batch, drop_last))
    got = list(itertools.islice(iter(chained), len(expected) + 1))
    assert len(got) == len(expected) + 1, 'it goes on past the last epoch asked for'
    got = got[:-1]
    assert got == expected
    assert expected[:len(chained)] != expected[len(chained):2 * len(chained)], 'set_epoch must reshuffle'
