"""InternVL2QLoRA on the tiny model: real nf4 bitsandbytes layers, LoRA, strict trainable state."""
import bitsandbytes as bnb
import re

import pytest
import torch
from torch import nn

from training_helpers import IGNORE, NF4, lora
from xtuner_ext.data.internvl2_dataset import internvl2_collate_fn
from xtuner_ext.models.internvl2_qlora import InternVL2QLoRA


@pytest.fixture
def batch(train_dataset):
    """Two 1-tile samples of different lengths (row 0 the shorter, so it is padded)."""
    one = sorted((len(s['input_ids']), i) for i, s in enumerate(train_dataset.samples) if s['num_tiles'] == 1)
    return internvl2_collate_fn([train_dataset[one[0][1]], train_dataset[one[-1][1]]])['data']


@pytest.fixture
def one_tile_image(train_dataset):
    return next(s['image'] for s in train_dataset.samples if s['num_tiles'] == 1)


def is_lora(name):
    return 'lora_A' in name or 'lora_B' in name


def test_llm_linears_are_nf4_except_lm_head(make_qlora, model_config):
    model = make_qlora()
    llm = model.model.language_model
    quantized, plain = [], []
    for name, module in llm.named_modules():
        if not isinstance(module, nn.Linear) or is_lora(name):
            continue
        (quantized if isinstance(module, bnb.nn.Linear4bit) else plain).append(name)
        if isinstance(module, bnb.nn.Linear4bit):
            assert module.weight.dtype == torch.uint8
            assert module.weight.quant_state is not None and module.weight.quant_state.quant_type == 'nf4'
    assert [n.rsplit('.', 1)[-1] for n in plain] == ['lm_head']
    assert len(quantized) == 7 * model_config.llm_config['num_hidden_layers']
    assert not any(isinstance(m, bnb.nn.Linear4bit) for m in model.model.vision_model.modules())
    assert not any(isinstance(m, bnb.nn.Linear4bit) for m in model.model.mlp1.modules())


def test_backward_reaches_only_lora_and_projector(make_qlora, batch):
    model = make_qlora()
    model.train()
    loss = model(batch, mode='loss')['loss']
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad == set(model.trainable_names())
    assert with_grad and all(is_lora(n) or n.startswith('model.mlp1.') for n in with_grad)
    assert any(n.startswith('model.mlp1.') for n in with_grad)
    assert sum(is_lora(n) for n in with_grad) == 2 * 7 * 2  # A and B of 7 targets in 2 layers
    for name, param in model.named_parameters():
        if param.grad is not None:
            assert param.dtype == param.grad.dtype == torch.float32, name
            assert torch.isfinite(param.grad).all(), name
        else:
            assert not param.requires_grad, name
    frozen = [n for n, _ in model.named_parameters() if n.startswith(('model.vision_model.', 'model.language_model.'))
              and not is_lora(n)]
    assert frozen and not with_grad & set(frozen)


def test_state_dict_is_exactly_the_trainable_params(make_qlora):
    model = make_qlora()
    state = model.state_dict()
    assert list(state) == model.trainable_names()
    assert set(state) == {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(k.startswith('model.mlp1.') for k in state) and any(is_lora(k) for k in state)


def randomize_trainable(model, seed=1):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=gen))
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_load_state_dict_round_trips(make_qlora):
    source, target = make_qlora(), make_qlora()
    state = randomize_trainable(source)
    assert not all(torch.equal(v, target.state_dict()[k]) for k, v in state.items())
    target.load_state_dict(state)
    loaded = target.state_dict()
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], v) for k, v in state.items())


@pytest.mark.parametrize('change', ['missing', 'extra', 'shape'])
def test_load_state_dict_rejects_what_does_not_fit(make_qlora, change):
    model = make_qlora()
    state = dict(model.state_dict())
    key = next(k for k in state if is_lora(k))
    if change == 'missing':
        del state[key]
    elif change == 'extra':
        state['model.language_model.base_model.model.lm_head.weight'] = torch.zeros(3)
    else:
        state[key] = torch.zeros(state[key].shape[0] + 1, *state[key].shape[1:])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    what = {'missing': '1 missing', 'extra': '1 unexpected', 'shape': '1 with other shapes'}[change]
    with pytest.raises(ValueError, match=f'does not fit this InternVL2QLoRA model.*{what}'):
        model.load_state_dict(state)
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())  # nothing half-loaded


def test_other_lora_rank_is_rejected(make_qlora):
    r4, r8 = make_qlora(llm_lora=lora(r=4)), make_qlora(llm_lora=lora(r=8))
    assert r4.state_dict().keys() == r8.state_dict().keys()
    with pytest.raises(ValueError, match=r'does not fit .*0 missing.*0 unexpected.*28 with other shapes'):
        r4.load_state_dict(r8.state_dict())


def test_pretrained_pth_loads_mmengine_checkpoint(make_qlora, tmp_path):
    source = make_qlora()
    state = randomize_trainable(source)
    path = tmp_path / 'iter_10.pth'
    torch.save({'meta': {'iter': 10}, 'state_dict': state, 'message_hub': {}}, path)
    loaded = make_qlora(pretrained_pth=str(path)).state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    bare = tmp_path / 'bare.pth'
    torch.save(state, bare)
    loaded = make_qlora(pretrained_pth=str(bare)).state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    with pytest.raises(ValueError, match='does not fit'):
        make_qlora(llm_lora=lora(r=8), pretrained_pth=str(path))


def test_mmengine_load_reports_what_was_restored_and_no_false_mismatch(make_qlora, tmp_path, capsys):
    """mmengine's loader (--resume, load_from) calls every submodule itself: frozen weights, absent from a
    trainable-only checkpoint by design, must not be reported missing; one line says what was restored."""
    from mmengine.logging import MMLogger
    from mmengine.runner.checkpoint import load_state_dict as mmengine_load_state_dict

    source, target = make_qlora(), make_qlora()
    state = randomize_trainable(source)
    log = tmp_path / 'run.log'
    MMLogger.get_instance('restored_line_test', log_file=str(log))  # print_log('current') writes here
    mmengine_load_state_dict(target, state)
    printed = capsys.readouterr()
    assert 'do not match' not in printed.out + printed.err and 'missing keys' not in printed.out + printed.err
    loaded = target.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    lines = [line for line in log.read_text().splitlines() if 'restored' in line]
    assert len(lines) == 1 and re.search(r'InternVL2QLoRA: restored [\d,]+ trainable parameters \(LoRA [\d,]+, '
                                         r'projector [\d,]+\) strictly; the [\d,]+ frozen ones stay as loaded from '
                                         + re.escape(target.model_path), lines[0]), lines


def test_torch_strict_load_needs_no_strict_false(make_qlora):
    source, target = make_qlora(), make_qlora()
    result = torch.nn.Module.load_state_dict(target, randomize_trainable(source), strict=True)
    assert result.missing_keys == [] and result.unexpected_keys == []


@pytest.mark.parametrize('damage', ['empty', 'truncated', 'random bytes'])
def test_corrupt_pretrained_pth_is_named_with_the_remedy(make_qlora, tmp_path, damage):
    path = tmp_path / 'iter_20.pth'
    torch.save({'meta': {'iter': 20}, 'state_dict': make_qlora().state_dict()}, path)
    torch.save({'meta': {'iter': 10}, 'state_dict': {}}, tmp_path / 'iter_10.pth')
    data = path.read_bytes()
    path.write_bytes({'empty': b'', 'truncated': data[:len(data) // 2], 'random bytes': bytes(range(256)) * 8}[damage])
    message = (rf'{re.escape(str(path))} is truncated or corrupt \(\d+ bytes; .*\): it is not a complete checkpoint '
               r'.*load an earlier one from the same folder \(iter_10.pth\), and delete this file')
    with pytest.raises(ValueError, match=message):
        make_qlora(pretrained_pth=str(path))


def test_all_ignored_labels_give_zero_loss_with_graph(make_qlora, batch):
    model = make_qlora()
    model.train()
    data = dict(batch, labels=torch.full_like(batch['labels'], IGNORE))
    loss = model(data, mode='loss')['loss']
    assert torch.isfinite(loss) and loss.item() == 0.0
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.count_nonzero(g) == 0 for g in grads)


def test_loss_decreases_over_adamw_steps(make_qlora, batch):
    torch.manual_seed(0)
    model = make_qlora()
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    losses = []
    for _ in range(15):
        optimizer.zero_grad()
        loss = model(batch, mode='loss')['loss']
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(map(torch.isfinite, torch.tensor(losses)))
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3


def test_loss_is_mean_over_answer_tokens(make_qlora, batch):
    """compute_loss (LM head on answer positions only) equals cross-entropy on the full logits."""
    model = make_qlora()
    model.eval()
    with torch.no_grad():
        loss = model(batch, mode='loss')['loss']
        logits = model(batch, mode='tensor')
    reference = nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                                            batch['labels'][:, 1:].reshape(-1), ignore_index=IGNORE)
    torch.testing.assert_close(loss, reference, rtol=1e-4, atol=1e-5)


def test_tensor_mode_shape_and_padding_invariance(make_qlora, batch, tokenizer):
    model = make_qlora()
    model.eval()
    with torch.no_grad():
        logits = model(batch, mode='tensor')
        assert logits.shape == (*batch['input_ids'].shape, len(tokenizer))
        # Row 0 is shorter (1 tile): alone, unpadded, it gives the same logits on its real tokens.
        n = int(batch['attention_mask'][0].sum())
        assert n < batch['input_ids'].shape[1]
        tiles0 = 1
        alone = model(dict(input_ids=batch['input_ids'][:1, :n], attention_mask=batch['attention_mask'][:1, :n],
                           pixel_values=batch['pixel_values'][:tiles0], image_flags=batch['image_flags'][:tiles0]),
                      mode='tensor')
    torch.testing.assert_close(logits[0, :n], alone[0], rtol=1e-4, atol=1e-4)


def module_modes(model):
    return {name: m.training for name, m in model.named_modules()}


@pytest.mark.parametrize('mode', ['train', 'eval', 'as_built'])
def test_chat_returns_text_and_keeps_modes(make_qlora, one_tile_image, mode):
    model = make_qlora(generation_config=dict(max_new_tokens=4, do_sample=False))
    if mode != 'as_built':
        model.train(mode == 'train')
    before = module_modes(model)
    answer = model.chat(one_tile_image, '讲一个梗')
    assert isinstance(answer, str)
    assert module_modes(model) == before


def test_predict_mode(make_qlora, one_tile_image):
    model = make_qlora(generation_config=dict(max_new_tokens=3, do_sample=False))
    image = one_tile_image
    out = model(dict(questions=['讲一个梗'], images=[image]), mode='predict')
    assert out == [dict(question='讲一个梗', image=image, answer=model.chat(image, '讲一个梗'))]
    with pytest.raises(NotImplementedError, match="mode must be 'loss', 'tensor' or 'predict'"):
        model({}, mode='bogus')


def test_bad_arguments(tiny_model_dir):
    with pytest.raises(ValueError, match='quantization_llm needs freeze_llm=True or llm_lora'):
        InternVL2QLoRA(str(tiny_model_dir), freeze_llm=False, quantization_llm=dict(NF4), llm_lora=None)
    no_targets = {k: v for k, v in lora().items() if k != 'target_modules'}
    with pytest.raises(ValueError, match='target_modules must be listed explicitly'):
        InternVL2QLoRA(str(tiny_model_dir), quantization_llm=dict(NF4), llm_lora=no_targets)
    with pytest.raises(ValueError, match="quant_type must be 'nf4' or 'fp4'"):
        InternVL2QLoRA(str(tiny_model_dir), quantization_llm=dict(NF4, quant_type='int8'), llm_lora=lora())


def test_gradient_checkpointing_gives_the_same_grads(make_qlora, batch):
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)  # same LoRA A init in both models
        model = make_qlora(gradient_checkpointing=checkpointing)
        model.train()
        model(batch, mode='loss')['loss'].backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    assert any(torch.count_nonzero(g) for n, g in grads[0].items() if 'lora_B' in n)
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=1e-4, atol=1e-6)


def test_unfrozen_tower_with_lora_trains_whole(make_qlora):
    """peft freezes every non-adapter weight; freeze_visual_encoder=False must still train the ViT."""
    model = make_qlora(freeze_visual_encoder=False,
                       visual_encoder_lora=dict(r=4, lora_alpha=8, target_modules=['attn.qkv']))
    vit = dict(model.model.vision_model.named_parameters())
    adapters = [n for n in vit if '.lora_' in n]
    assert adapters and all(vit[n].requires_grad for n in vit)
    llm = dict(model.model.language_model.named_parameters())
    assert all(p.requires_grad == ('.lora_' in n) for n, p in llm.items())  # freeze_llm=True: adapters only


def test_image_tokens_without_pixels_are_an_error(make_qlora, train_dataset):
    from xtuner_ext.data.internvl2_dataset import internvl2_collate_fn

    model = make_qlora()
    batch = internvl2_collate_fn([train_dataset[0]])['data']
    del batch['pixel_values'], batch['image_flags']
    with pytest.raises(ValueError, match='no pixel_values were given'):
        model(batch, mode='loss')
