"""The frozen-ViT feature cache keeps training the same: a step whose images are cached gives the
loss and gradients of the uncached path (tiny model, real nf4 layers, fp32 CPU), changed pixels
miss, the size cap holds, and settings that would change training are refused.

Tolerance: as the other speed levers (test_packing.py): fp32, the ViT batched differently only.
"""
import contextlib
import json
import logging
import shutil

import pytest
import torch

from training_helpers import lora
from test_packing import _assert_same, _loss_and_grads, _randomize_lora_b, _samples

from xtuner_ext.data.internvl2_dataset import internvl2_collate_fn
from xtuner_ext.data.packing import internvl2_packed_collate_fn
from xtuner_ext.models.vision_cache import VisionFeatureCache, pixel_digest


@contextlib.contextmanager
def _mmengine_messages():
    """What mmengine's current logger says inside the block (it does not propagate to caplog)."""
    from mmengine.logging import MMLogger

    logger, messages = MMLogger.get_current_instance(), []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


def _counting(model):
    """Count the tiles the ViT really runs on (the cache's whole point is to skip them)."""
    seen = []
    original = model.model.vision_tokens

    def vision_tokens(pixel_values):
        seen.append(len(pixel_values))
        return original(pixel_values)

    model.model.vision_tokens = vision_tokens
    return seen


def test_dataset_and_collates_carry_one_key_per_image(train_dataset):
    samples = _samples(train_dataset)
    assert all(s['image_key'] == pixel_digest(s['pixel_values']) for s in samples)
    assert len({s['image_key'] for s in samples}) == len(samples)
    assert train_dataset[0]['image_key'] == train_dataset[0]['image_key']  # read again: same pixels, same key
    for collate in (internvl2_collate_fn, internvl2_packed_collate_fn):
        data = collate(samples)['data']
        assert data['image_keys'] == [s['image_key'] for s in samples]
        assert data['image_tiles'] == [len(s['pixel_values']) for s in samples]
        assert sum(data['image_tiles']) == len(data['pixel_values'])


def test_changed_pixels_change_the_key(train_dataset):
    pixels = train_dataset[0]['pixel_values']
    changed = pixels.clone()
    changed[0, 0, 0, 0] += 1e-3
    assert pixel_digest(changed) != pixel_digest(pixels)
    assert pixel_digest(pixels[:1]) != pixel_digest(pixels)


@pytest.mark.parametrize('collate', [internvl2_packed_collate_fn, internvl2_collate_fn])
def test_cached_steps_give_the_uncached_loss_and_gradients(make_qlora, train_dataset, collate):
    model = make_qlora(llm_lora=lora(r=4), vision_feature_cache_gib=1)
    _randomize_lora_b(model)
    tiles_run = _counting(model)
    samples = _samples(train_dataset)
    batch = collate(samples)
    cache, model.vision_cache = model.vision_cache, None
    reference = _loss_and_grads(model, batch)  # plain path
    model.vision_cache = cache
    first = _loss_and_grads(model, batch)  # every image a miss: stored
    assert cache.misses == len(samples) and cache.hits == 0 and len(cache.entries) == len(samples)
    second = _loss_and_grads(model, batch)  # every image a hit: the ViT does not run
    assert cache.hits == len(samples)
    total = len(batch['data']['pixel_values'])
    assert tiles_run == [total, total], 'the all-hits step must not run the ViT'
    _assert_same(reference, first)
    _assert_same(reference, second)
    # half hits, half new, one image twice in the batch: only the new images run, once each
    fresh = [train_dataset[i] for i in range(len(train_dataset))
             if train_dataset[i]['image_key'] not in cache.entries][:2]
    mixed = collate([fresh[0], samples[0], fresh[1], fresh[0]])
    model.vision_cache = None
    reference = _loss_and_grads(model, mixed)
    model.vision_cache = cache
    _assert_same(reference, _loss_and_grads(model, mixed))
    assert tiles_run[-1] == len(fresh[0]['pixel_values']) + len(fresh[1]['pixel_values'])


def test_cap_is_kept_and_said_once(make_qlora, train_dataset):
    model = make_qlora(llm_lora=lora(r=4), vision_feature_cache_gib=1e-9)
    batch = internvl2_packed_collate_fn(_samples(train_dataset))
    with _mmengine_messages() as messages:
        for _ in range(2):
            model(batch['data'], mode='loss')
    assert model.vision_cache.entries == {} and model.vision_cache.bytes == 0
    assert model.vision_cache.misses == 2 * len(_samples(train_dataset))
    assert len([m for m in messages if 'vision feature cache full at 0 images' in m]) == 1, messages


def test_keys_must_describe_the_tiles():
    cache = VisionFeatureCache(1)
    with pytest.raises(ValueError, match='image_tiles'):
        cache.features(torch.zeros(3, 1), ['a', 'b'], [1, 1], lambda x: x)


@pytest.mark.parametrize('kwargs', [dict(freeze_visual_encoder=False), dict(frozen_vision_no_grad=False),
                                    dict(visual_encoder_lora=dict(r=2, lora_alpha=4, target_modules=['attn.qkv']))])
def test_settings_that_would_change_training_are_refused(make_qlora, kwargs):
    with pytest.raises(ValueError, match='vision_feature_cache_gib=1 needs a frozen ViT'):
        make_qlora(vision_feature_cache_gib=1, **kwargs)
    with pytest.raises(ValueError, match='positive'):
        VisionFeatureCache(0)


def test_a_stochastic_vit_turns_the_cache_off_with_a_warning(tiny_model_dir, tmp_path):
    from training_helpers import NF4
    from xtuner_ext.models.internvl2_qlora import InternVL2QLoRA

    folder = shutil.copytree(tiny_model_dir, tmp_path / 'drop_path')
    config = json.loads((folder / 'config.json').read_text())
    config['vision_config']['drop_path_rate'] = 0.1
    (folder / 'config.json').write_text(json.dumps(config))
    with _mmengine_messages() as messages:
        model = InternVL2QLoRA(str(folder), quantization_llm=dict(NF4), llm_lora=lora(), gradient_checkpointing=False,
                               vision_feature_cache_gib=1)
    assert model.vision_cache is None
    assert any('vision_feature_cache_gib=1 is off' in m and 'drop' in m for m in messages), messages
