"""CappedTrainLoop: a short run squeezes the whole learning-rate schedule into the capped iterations."""
import pytest

from xtuner_ext.engine.train_loop import squeeze_schedules

TWO_B = [  # the 2B config's schedule (epoch-based), 6 epochs of 500 iterations
    dict(type='LinearLR', start_factor=1e-5, by_epoch=True, begin=0, end=0.18, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=True, begin=0.18, end=6, convert_to_iter_based=True),
]


def test_epoch_schedule_becomes_a_proportional_iteration_schedule():
    squeezed = squeeze_schedules(TWO_B, full_iters=3000, cap=100, epoch_length=500)
    assert [(s['begin'], s['end'], s['by_epoch']) for s in squeezed] == [(0, 3, False), (3, 100, False)]
    assert TWO_B[0]['by_epoch'] is True  # the config is not modified


def test_a_tiny_cap_still_gives_every_scheduler_one_iteration():
    tiny = [dict(type='LinearLR', by_epoch=False, begin=0, end=5), dict(type='ConstantLR', by_epoch=False, begin=5)]
    squeezed = squeeze_schedules(tiny, full_iters=100, cap=3, epoch_length=10)
    assert [(s['begin'], s.get('end')) for s in squeezed] == [(0, 1), (0, None)]


def test_per_optimizer_schedules_are_squeezed_each():
    squeezed = squeeze_schedules(dict(a=TWO_B, b=TWO_B[:1]), full_iters=3000, cap=300, epoch_length=500)
    assert squeezed['a'][1]['end'] == 300 and squeezed['b'][0]['end'] == 9


def test_built_schedulers_are_refused():
    with pytest.raises(TypeError, match='param_scheduler configs as dicts'):
        squeeze_schedules([object()], full_iters=10, cap=3, epoch_length=10)


def test_uncapped_runs_keep_the_schedule_but_never_an_empty_warm_up():
    """A small data set: 0.03 x 2 epochs of 5 iterations rounds to 0 in mmengine, which then refuses it."""
    squeezed = squeeze_schedules(TWO_B, full_iters=10, cap=10, epoch_length=5)
    assert [(s['begin'], s['end']) for s in squeezed] == [(0, 1), (0, 30)]
    full = squeeze_schedules(TWO_B, full_iters=3000, cap=3000, epoch_length=500)
    assert [(s['begin'], s['end']) for s in full] == [(0, 90), (90, 3000)]
