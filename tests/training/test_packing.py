"""Speed levers keep training the same: packed rows (split attention; the varlen call's layout), a
no-grad frozen ViT, the fused-loss switch, partial recomputation and the LoRA addmm give the loss
and gradients of the plain path (tiny model, real nf4 layers, fp32 CPU).

Tolerance: fp32, different summation order only -> loss within 1e-5 relative, every gradient within
rtol 1e-4 / atol 1e-6 of the plain path's.
"""
import functools

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from training_helpers import IGNORE, lora

from xtuner_ext.data.internvl2_dataset import internvl2_collate_fn
from xtuner_ext.data.packing import internvl2_packed_collate_fn
from xtuner_ext.models.recompute import RECOMPUTE_KEEPS, attention_ops


def _loss_and_grads(model, batch):
    model.zero_grad(set_to_none=True)
    loss = model(batch['data'], mode='loss')['loss']
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _samples(dataset, count=4):
    """Samples of different lengths (padding matters) with and without several tiles."""
    by_length = sorted(range(len(dataset)), key=lambda i: len(dataset.samples[i]['input_ids']))
    picked = [by_length[0], by_length[-1], by_length[len(by_length) // 2], by_length[1]][:count]
    return [dataset[i] for i in picked]


def _randomize_lora_b(model):
    """peft starts lora_B at zero, which would leave every lora_A gradient zero (a vacuous check)."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if 'lora_B' in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.02)


def _assert_same(reference, other):
    (loss_a, grads_a), (loss_b, grads_b) = reference, other
    assert torch.allclose(loss_a, loss_b, rtol=1e-5, atol=0), (loss_a.item(), loss_b.item())
    assert grads_a.keys() == grads_b.keys()
    assert any('lora_A' in n for n in grads_a) and any('mlp1' in n for n in grads_a)
    for name in grads_a:
        assert grads_a[name].abs().max() > 0, name
        torch.testing.assert_close(grads_b[name], grads_a[name], rtol=1e-4, atol=1e-6, msg=name)


def test_packed_collate_marks_samples(train_dataset):
    samples = _samples(train_dataset)
    data = internvl2_packed_collate_fn(samples)['data']
    lengths = [len(s['input_ids']) for s in samples]
    assert data['input_ids'].shape == (1, sum(lengths))
    assert data['cu_seqlens'].tolist() == [0] + torch.tensor(lengths).cumsum(0).tolist()
    starts = data['cu_seqlens'][:-1].long()
    assert (data['position_ids'][0, starts] == 0).all() and data['position_ids'].max() == max(lengths) - 1
    assert (data['labels'][0, starts] == IGNORE).all()
    assert data['pixel_values'].shape[0] == sum(s['pixel_values'].shape[0] for s in samples)


@pytest.mark.parametrize('checkpointing', [False, True])
def test_packed_rows_give_the_padded_batch_loss_and_gradients(make_qlora, train_dataset, checkpointing):
    model = make_qlora(llm_lora=lora(r=4), gradient_checkpointing=checkpointing, frozen_vision_no_grad=False)
    _randomize_lora_b(model)
    samples = _samples(train_dataset)
    padded = internvl2_collate_fn(samples)
    assert not padded['data']['attention_mask'].all(), 'the batch must hold padding'
    reference = _loss_and_grads(model, padded)
    model.frozen_vision_no_grad = True  # the lever's own switch, on the same weights
    _assert_same(reference, _loss_and_grads(model, internvl2_packed_collate_fn(samples)))


def test_frozen_vit_without_grad_gives_the_same_gradients(make_qlora, train_dataset):
    model = make_qlora(llm_lora=lora(r=4), frozen_vision_no_grad=False)
    _randomize_lora_b(model)
    batch = internvl2_collate_fn(_samples(train_dataset, 2))
    reference = _loss_and_grads(model, batch)
    model.frozen_vision_no_grad = True
    _assert_same(reference, _loss_and_grads(model, batch))


def test_fused_loss_switch_keeps_the_loss_on_cpu(make_qlora, train_dataset):
    """'liger' runs only on CUDA (tests/gpu checks the kernel); the CPU path must be the plain loss."""
    model = make_qlora(llm_lora=lora(r=4))
    _randomize_lora_b(model)
    batch = internvl2_packed_collate_fn(_samples(train_dataset))
    reference = _loss_and_grads(model, batch)
    model.fused_loss = 'liger'
    _assert_same(reference, _loss_and_grads(model, batch))


def test_fused_loss_rejects_unknown_names(make_qlora):
    with pytest.raises(ValueError, match="fused_loss must be one of"):
        make_qlora(fused_loss='cut')


def test_packed_attention_rejects_bounds_that_do_not_cover_the_row(make_qlora, train_dataset):
    model = make_qlora()
    batch = internvl2_packed_collate_fn(_samples(train_dataset, 2))['data']
    batch["cu_seqlens"] = batch["cu_seqlens"][:-1]
    with pytest.raises(ValueError, match='packed batch is one row'):
        model(batch, mode='loss')


@pytest.mark.parametrize('fixture', ['internvl2_tiny', 'internvl2_tiny_qwen2', 'internvl2_tiny_phi3'])
def test_packed_decoder_matches_each_sample_alone(fixture):
    """Every LLM family InternVL2 ships (InternLM2 as Llama, Qwen2, Phi-3) honours the sample bounds:
    a packed row's hidden states equal each sample's own forward (a dropped bound would leak)."""
    from pathlib import Path

    from xtuner_ext.models.internvl2 import InternVLChatModel
    from xtuner_ext.models.packed_attention import enable_packed_attention, run_packed_decoder

    folder = Path(__file__).resolve().parents[1] / 'fixtures' / fixture
    llm = InternVLChatModel.from_pretrained(folder, torch_dtype=torch.float32).language_model
    enable_packed_attention(llm)
    decoder = llm.get_decoder()
    generator = torch.Generator().manual_seed(0)
    lengths = [7, 12, 5]
    samples = [torch.randint(3, llm.config.vocab_size, (n,), generator=generator) for n in lengths]
    with torch.no_grad():
        alone = torch.cat([decoder(input_ids=ids[None]).last_hidden_state[0] for ids in samples])
        embeds = decoder.get_input_embeddings()(torch.cat(samples))[None]
        positions = torch.cat([torch.arange(n) for n in lengths])[None]
        packed = run_packed_decoder(decoder, embeds, positions, torch.tensor([0, 7, 19, 24]))[0]
    torch.testing.assert_close(packed, alone, rtol=1e-4, atol=1e-5)


def _count_layer_calls(model):
    """Forward calls per LLM decoder layer, counted at its first projection (a recomputed layer runs
    it twice in a training step; torch stops a recomputation early, so the layer's own hook may not fire)."""
    calls = {}
    for index, layer in enumerate(model._decoder_and_head()[0].layers):
        layer.self_attn.q_proj.register_forward_hook(
            lambda module, args, output, index=index: calls.update({index: calls.get(index, 0) + 1}))
    return calls


@pytest.mark.parametrize('collate', [internvl2_packed_collate_fn, internvl2_collate_fn])
def test_recomputing_some_layers_keeps_gradients_and_skips_the_others(make_qlora, train_dataset, collate):
    """recompute_llm_layers=1: layer 0 runs twice (forward + recompute), the others once; the loss
    and gradients are those of full recomputation (packed rows and padded batches alike)."""
    model = make_qlora(llm_lora=lora(r=4), gradient_checkpointing=True)
    _randomize_lora_b(model)
    batch = collate(_samples(train_dataset))
    reference = _loss_and_grads(model, batch)
    model.set_recompute(True, llm_layers=1)
    calls = _count_layer_calls(model)
    partial = _loss_and_grads(model, batch)
    layers = len(model._decoder_and_head()[0].layers)
    assert layers >= 2 and calls == {0: 2, **{i: 1 for i in range(1, layers)}}, calls
    _assert_same(reference, partial)


class _OpCalls(TorchDispatchMode):
    """Counts the calls of the ops a predicate picks that really run (a kept output is not recomputed)."""

    def __init__(self, picks):
        super().__init__()
        self.picks, self.calls = picks, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls += bool(self.picks(func, args))
        return func(*args, **(kwargs or {}))


def _attention(func, args):
    return func in attention_ops()


def _down_proj_gemm(func, args, inner=None):
    return func is torch.ops.aten.mm.default and args[0].shape[-1] == inner


@pytest.mark.parametrize('collate', [internvl2_packed_collate_fn, internvl2_collate_fn])
@pytest.mark.parametrize('keep', RECOMPUTE_KEEPS)
def test_recomputed_layers_keep_outputs_run_their_ops_once_with_the_same_gradients(make_qlora, train_dataset, collate,
                                                                                   keep):
    """recompute_keeps: in recomputed layers the kept outputs' ops run as often as in layers that keep
    everything (forward only; plain recomputation runs them again), with plain recomputation's loss
    and gradients."""
    model = make_qlora(llm_lora=lora(r=4), gradient_checkpointing=True)
    _randomize_lora_b(model)
    batch = collate(_samples(train_dataset))
    inner = model._decoder_and_head()[0].config.intermediate_size
    picks = _attention if keep == 'attention' else functools.partial(_down_proj_gemm, inner=inner)
    runs = {}
    for name, layers, keeps in (('kept', None, (keep,)), ('plain', None, ()), ('none recomputed', 0, ())):
        model.set_recompute(True, llm_layers=layers, keeps=keeps)
        with _OpCalls(picks) as mode:
            runs[name] = _loss_and_grads(model, batch)
        runs[name] += (mode.calls,)
    calls = {name: run[2] for name, run in runs.items()}
    assert 0 < calls['kept'] == calls['none recomputed'] < calls['plain'], calls
    _assert_same(runs['plain'][:2], runs['kept'][:2])


def test_frozen_vit_under_autocast_runs_in_its_own_dtype_with_the_same_loss_and_gradients(make_qlora, train_dataset):
    """A bf16 model under bf16 autocast: the frozen ViT runs with autocast off (on CUDA autocast would
    run its LayerNorms in float32; tests/gpu compares the kernels), the loss and gradients are the
    autocast path's bit for bit."""
    model = make_qlora(llm_lora=lora(r=4), torch_dtype=torch.bfloat16)
    _randomize_lora_b(model)
    batch = internvl2_packed_collate_fn(_samples(train_dataset))
    autocast_in_vit = []
    model.model.vision_model.encoder.layers[0].norm1.register_forward_hook(
        lambda module, args, output: autocast_in_vit.append(torch.is_autocast_enabled('cpu')))
    runs = {}
    for own_dtype in (False, True):
        model.frozen_vision_own_dtype = own_dtype
        with torch.autocast('cpu', dtype=torch.bfloat16):
            runs[own_dtype] = _loss_and_grads(model, batch)
    assert autocast_in_vit == [True, False]
    assert torch.equal(runs[False][0], runs[True][0])
    for name, grad in runs[False][1].items():
        assert torch.equal(runs[True][1][name], grad), name


def test_recompute_settings_are_checked(make_qlora):
    with pytest.raises(ValueError, match='recompute_llm_layers must be between 0 and'):
        make_qlora(gradient_checkpointing=True, recompute_llm_layers=99)
    with pytest.raises(ValueError, match='needs gradient_checkpointing=True'):
        make_qlora(gradient_checkpointing=False, recompute_llm_layers=1)
    with pytest.raises(ValueError, match=r"recompute_keeps=\('attention',\) needs gradient_checkpointing=True"):
        make_qlora(gradient_checkpointing=False, recompute_keeps=('attention',))
    with pytest.raises(ValueError, match=r"recompute_keeps: unknown \['mlp'\]; choose from"):
        make_qlora(gradient_checkpointing=True, recompute_keeps=('mlp',))


def test_packed_attention_kernel_choice(make_qlora, train_dataset):
    """'varlen' says why it cannot run on the CPU (fp32, no CUDA); unknown names fail at build time.
    'auto' falls back to the split kernel there (the tests above)."""
    with pytest.raises(ValueError, match='packed_attention must be one of'):
        make_qlora(packed_attention='flash')
    model = make_qlora(packed_attention='varlen')
    with pytest.raises(RuntimeError, match="packed_attention='varlen' cannot run here: .*use 'auto' or 'split'"):
        model(internvl2_packed_collate_fn(_samples(train_dataset, 2))['data'], mode='loss')


def test_cudnn_kernel_falls_back_to_the_other_sdpa_kernels_where_cudnn_cannot_run(make_qlora, train_dataset):
    """'cudnn' only reorders SDPA's kernel preference: on the CPU (no cuDNN attention) it computes what
    'split' does. The cuDNN kernel itself: tests/gpu/test_speed_levers_cuda.py."""
    from xtuner_ext.models import packed_attention

    model = make_qlora(llm_lora=lora(r=4), packed_attention='split')
    _randomize_lora_b(model)
    batch = internvl2_packed_collate_fn(_samples(train_dataset, 3))
    reference = _loss_and_grads(model, batch)
    packed_attention.enable_packed_attention(model.model.language_model, 'cudnn')
    _assert_same(reference, _loss_and_grads(model, batch))
    config = model.model.language_model.config
    assert config.num_key_value_heads < config.num_attention_heads  # so sharing the heads is a different call


def test_liger_layers_keep_cpu_outputs_and_state_and_refuse_phi3():
    """The Liger routing changes nothing off CUDA (outputs, parameter names) and refuses Phi-3's fused
    gate_up MLP by name; the CUDA kernels themselves are checked in tests/gpu."""
    from pathlib import Path

    from xtuner_ext.models.internvl2 import InternVLChatModel
    from xtuner_ext.models.liger_layers import use_liger_layers

    fixtures = Path(__file__).resolve().parents[1] / 'fixtures'
    llm = InternVLChatModel.from_pretrained(fixtures / 'internvl2_tiny', torch_dtype=torch.float32).language_model
    decoder = llm.get_decoder()
    ids = torch.randint(3, llm.config.vocab_size, (1, 9), generator=torch.Generator().manual_seed(0))
    keys = list(llm.state_dict())
    with torch.no_grad():
        before = decoder(input_ids=ids).last_hidden_state
        use_liger_layers(decoder)
        after = decoder(input_ids=ids).last_hidden_state
    assert torch.equal(before, after) and list(llm.state_dict()) == keys
    phi3 = InternVLChatModel.from_pretrained(fixtures / 'internvl2_tiny_phi3', torch_dtype=torch.float32)
    with pytest.raises(ValueError, match='gate_up_proj'):
        use_liger_layers(phi3.language_model.get_decoder())


def _reference_varlen(q, k, v, cu_q, cu_k, max_q, max_k, window_size=None, is_causal=False, scale=None,
                      enable_gqa=False):
    """torch's varlen_attn contract ([T, H, D] in and out, causal within each cu_seqlens range), in
    plain SDPA: stands in for the CUDA kernel so the CPU checks the layout handling around it."""
    assert window_size == (-1, 0) or is_causal
    bounds = cu_q.tolist()
    assert bounds == cu_k.tolist() and max_q == max(e - s for s, e in zip(bounds[:-1], bounds[1:]))
    outputs = [F.scaled_dot_product_attention(*(t[s:e].transpose(0, 1) for t in (q, k, v)), is_causal=True, scale=scale,
                                              enable_gqa=enable_gqa).transpose(0, 1)
               for s, e in zip(bounds[:-1], bounds[1:])]
    return torch.cat(outputs)


@pytest.mark.parametrize('spelling', ['torch 2.10/2.11', 'torch 2.12+'])
def test_varlen_call_lays_out_the_row_like_the_split_path(monkeypatch, spelling):
    """The varlen path's transposes, GQA handling and output layout ([1, T, H, D]) give the split
    path's output, whichever keywords this torch's varlen_attn takes (the kernel runs in tests/gpu)."""
    from xtuner_ext.models import packed_attention as pa

    new = spelling == 'torch 2.12+'
    causal = dict(window_size=(-1, 0)) if new else dict(is_causal=True)
    monkeypatch.setattr(pa, '_varlen_function', lambda: pa._Varlen(_reference_varlen, causal, new, new))
    generator = torch.Generator().manual_seed(0)
    lengths, heads, kv_heads, dim = [5, 9, 3], 4, 2, 8
    total = sum(lengths)
    # [1, H, T, D] views of [T, H, D] memory, as transformers' attention layers hand them over
    query, key, value = (torch.randn(1, total, h, dim, generator=generator).transpose(1, 2)
                         for h in (heads, kv_heads, kv_heads))
    row = pa.PackedRow.from_cu_seqlens(torch.tensor([0, 5, 14, 17]), torch.device('cpu'))
    varlen = pa._varlen_attention(query, key, value, row, heads // kv_heads, dim ** -0.5)
    split = pa._split_attention(query, key, value, row, heads // kv_heads, dim ** -0.5, 0.0)
    assert varlen.shape == split.shape == (1, total, heads, dim)
    torch.testing.assert_close(varlen, split, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('collate', [internvl2_packed_collate_fn, internvl2_collate_fn])
def test_lora_addmm_gives_peft_loss_and_gradients(make_qlora, train_dataset, collate):
    """The LoRA update inside one addmm = peft's clone + scale + add: same loss and gradients
    (fp32), with LoRA dropout on (same seed -> the same masks) and recomputation on."""
    from xtuner_ext.models.lora_addmm import use_lora_addmm

    from torch.overrides import TorchFunctionMode

    class CountAddmm(TorchFunctionMode):
        calls = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            CountAddmm.calls += func is torch.addmm
            return func(*args, **(kwargs or {}))

    model = make_qlora(llm_lora=lora(r=4, dropout=0.1), gradient_checkpointing=True)
    _randomize_lora_b(model)
    batch = collate(_samples(train_dataset))
    torch.manual_seed(0)
    reference = _loss_and_grads(model, batch)
    assert use_lora_addmm(model.model) == 2 * 7  # every adapted projection of the tiny LLM's 2 layers
    torch.manual_seed(0)
    with CountAddmm():
        routed = _loss_and_grads(model, batch)
    assert CountAddmm.calls >= 2 * 7, CountAddmm.calls  # the routed forward ran (and again in recomputation)
    _assert_same(reference, routed)
    use_lora_addmm(model.model, enabled=False)
    torch.manual_seed(0)
    _assert_same(reference, _loss_and_grads(model, batch))


def test_varlen_probe_reports_a_kernel_that_cannot_run():
    """'auto' tries torch's varlen kernel once per device/dtype (forward and backward) before using
    it; where it fails (here: the CPU, which has no such kernel) the probe says why instead of raising."""
    from xtuner_ext.models.packed_attention import _varlen_probe_failure

    failure = _varlen_probe_failure(torch.device('cpu'), torch.bfloat16, 16)
    assert failure and failure.startswith('the varlen kernel failed on a tiny row'), failure
