"""The speed levers on a GPU (bf16 autocast, nf4, flash SDPA, Liger's Triton kernel) give the plain
path's loss and gradients. Skipped without CUDA; CPU equivalence is in tests/training/test_packing.py.

Tolerance: bf16 compute with a different kernel/summation order: loss within 1e-2 relative, each
gradient within 3e-2 of the plain one in relative L2 norm.
"""
import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')]

LORA = dict(r=16, lora_alpha=32, lora_dropout=0.0, task_type='CAUSAL_LM',
            target_modules=['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'])


@pytest.fixture(scope='module')
def model_and_samples(tmp_path_factory):
    from xtuner_ext.data.internvl2_dataset import InternVL2ConversationDataset
    from xtuner_ext.data.sample import make_clot_sample
    from xtuner_ext.models.internvl2.tiny import make_tiny_model
    from xtuner_ext.models.internvl2_qlora import InternVL2QLoRA

    root = tmp_path_factory.mktemp('levers')
    model_dir = make_tiny_model(root / 'model', seed=0, max_dynamic_patch=2)
    data_dir = make_clot_sample(root / 'data', seed=0)
    model = InternVL2QLoRA(str(model_dir), quantization_llm=dict(quant_type='nf4', double_quant=True),
                           llm_lora=LORA, gradient_checkpointing=True)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if 'lora_B' in name:
                param.copy_(torch.randn(param.shape, generator=generator).to(param.device) * 0.02)
    dataset = InternVL2ConversationDataset(str(model_dir), str(data_dir / 'train.json'), max_length=1024,
                                           image_folder=str(data_dir))
    return model, [dataset[i] for i in range(4)]


def _run(model, batch):
    model.zero_grad(set_to_none=True)
    data = {k: v.cuda() if torch.is_tensor(v) else v for k, v in batch['data'].items()}
    with torch.autocast('cuda', dtype=torch.bfloat16):
        loss = model(data, mode='loss')['loss']
    loss.backward()
    return loss.detach().float(), {n: p.grad.float().clone() for n, p in model.named_parameters() if p.grad is not None}


def _assert_close(reference, other):
    (loss_a, grads_a), (loss_b, grads_b) = reference, other
    assert torch.allclose(loss_a, loss_b, rtol=1e-2), (loss_a.item(), loss_b.item())
    assert grads_a.keys() == grads_b.keys() and grads_a
    for name, grad in grads_a.items():
        error = (grads_b[name] - grad).norm() / grad.norm().clamp(min=1e-12)
        assert error < 3e-2, (name, error.item())


def test_packed_rows_match_the_padded_batch_on_cuda(model_and_samples):
    from xtuner_ext.data.internvl2_dataset import internvl2_collate_fn
    from xtuner_ext.data.packing import internvl2_packed_collate_fn

    model, samples = model_and_samples
    model.fused_loss = None
    _assert_close(_run(model, internvl2_collate_fn(samples)), _run(model, internvl2_packed_collate_fn(samples)))


def test_liger_fused_loss_matches_the_plain_loss_on_cuda(model_and_samples):
    from xtuner_ext.data.packing import internvl2_packed_collate_fn

    model, samples = model_and_samples
    batch = internvl2_packed_collate_fn(samples)
    model.fused_loss = None
    reference = _run(model, batch)
    model.fused_loss = 'liger'
    try:
        _assert_close(reference, _run(model, batch))
    finally:
        model.fused_loss = None


def _packed_kernel(model, kernel):
    from xtuner_ext.models.packed_attention import enable_packed_attention

    enable_packed_attention(model.model.language_model, kernel)


def test_varlen_attention_matches_per_sample_sdpa_on_cuda(model_and_samples):
    """One varlen flash call over the packed row = one SDPA call per sample (torch.split)."""
    from xtuner_ext.models.packed_attention import _varlen_probe_failure, varlen_unavailable_reason

    model, samples = model_and_samples
    probe = torch.zeros(1, 2, 8, 64, device='cuda', dtype=torch.bfloat16)
    assert varlen_unavailable_reason(probe, 0.0, None) is None, varlen_unavailable_reason(probe, 0.0, None)
    for head_dim in (16, 128):  # the tiny model's and InternVL2-2B's
        failure = _varlen_probe_failure(probe.device, torch.bfloat16, head_dim)
        assert failure is None, failure
    _assert_kernel_matches_split(model, samples, 'varlen')


def test_cudnn_attention_matches_per_sample_sdpa_on_cuda(model_and_samples):
    """'cudnn' (per-sample SDPA, cuDNN's kernel preferred) = per-sample SDPA with torch's default choice."""
    _assert_kernel_matches_split(*model_and_samples, 'cudnn')


def _assert_kernel_matches_split(model, samples, kernel):
    from xtuner_ext.data.packing import internvl2_packed_collate_fn

    batch = internvl2_packed_collate_fn(samples)
    model.fused_loss = None
    try:
        _packed_kernel(model, 'split')
        reference = _run(model, batch)
        _packed_kernel(model, kernel)
        _assert_close(reference, _run(model, batch))
    finally:
        _packed_kernel(model, 'auto')


def test_liger_loss_on_the_padded_head_matches_the_unpadded_head_on_cuda(model_and_samples, monkeypatch):
    """The head padded to 128 rows (aligned GEMMs) gives the unpadded head's loss and gradients; the
    tiny model's vocabulary is not a multiple of 128, so the padding really happens."""
    from xtuner_ext.data.packing import internvl2_packed_collate_fn
    from xtuner_ext.models import answer_loss

    model, samples = model_and_samples
    assert model._decoder_and_head()[1].weight.shape[0] % answer_loss.HEAD_ROWS_MULTIPLE
    batch = internvl2_packed_collate_fn(samples)
    model.fused_loss = 'liger'
    try:
        monkeypatch.setattr(answer_loss, 'HEAD_ROWS_MULTIPLE', 1)
        reference = _run(model, batch)
        monkeypatch.setattr(answer_loss, 'HEAD_ROWS_MULTIPLE', 128)
        _assert_close(reference, _run(model, batch))
    finally:
        model.fused_loss = None


def test_partial_recompute_matches_full_recompute_on_cuda(model_and_samples):
    from xtuner_ext.data.packing import internvl2_packed_collate_fn

    model, samples = model_and_samples
    batch = internvl2_packed_collate_fn(samples)
    model.fused_loss = None
    reference = _run(model, batch)
    try:
        model.set_recompute(True, llm_layers=1)
        _assert_close(reference, _run(model, batch))
    finally:
        model.set_recompute(True)


def test_liger_layers_match_transformers_layers_on_cuda(model_and_samples):
    """Liger's fused RMSNorm and SwiGLU give transformers' loss and gradients (bf16 tolerance)."""
    from xtuner_ext.data.packing import internvl2_packed_collate_fn
    from xtuner_ext.models.liger_layers import use_liger_layers

    model, samples = model_and_samples
    batch = internvl2_packed_collate_fn(samples)
    model.fused_loss = None
    decoder = model._decoder_and_head()[0]
    reference = _run(model, batch)
    try:
        use_liger_layers(decoder)
        _assert_close(reference, _run(model, batch))
    finally:
        use_liger_layers(decoder, enabled=False)


def test_lora_addmm_matches_peft_forward_on_cuda(model_and_samples):
    from xtuner_ext.data.packing import internvl2_packed_collate_fn
    from xtuner_ext.models.lora_addmm import use_lora_addmm

    model, samples = model_and_samples
    batch = internvl2_packed_collate_fn(samples)
    model.fused_loss = None
    reference = _run(model, batch)
    try:
        assert use_lora_addmm(model.model) > 0
        _assert_close(reference, _run(model, batch))
    finally:
        use_lora_addmm(model.model, enabled=False)


def test_vision_feature_cache_matches_the_uncached_step_on_cuda(model_and_samples):
    """Features stored in one step (bf16, on the GPU) and served in the next give the plain step's loss
    and gradients; the second step runs no ViT."""
    from xtuner_ext.data.packing import internvl2_packed_collate_fn
    from xtuner_ext.models.vision_cache import VisionFeatureCache

    model, samples = model_and_samples
    batch = internvl2_packed_collate_fn(samples)
    model.vision_cache = None
    reference = _run(model, batch)
    model.vision_cache = VisionFeatureCache(1)
    try:
        _assert_close(reference, _run(model, batch))  # misses: computed and stored
        _assert_close(reference, _run(model, batch))  # hits only
        assert model.vision_cache.hits == len(samples) and model.vision_cache.misses == len(samples)
        assert all(f.is_cuda for f in model.vision_cache.entries.values())
    finally:
        model.vision_cache = None


def test_recomputed_layers_keeping_outputs_match_plain_recomputation_on_cuda(model_and_samples):
    """Selective checkpointing around SDPA's CUDA kernels (flash, and cuDNN under 'cudnn') and the
    down projection's GEMMs (the dequantized 4-bit matmul and LoRA A)."""
    from xtuner_ext.data.packing import internvl2_packed_collate_fn
    from xtuner_ext.models.packed_attention import enable_packed_attention

    model, samples = model_and_samples
    batch = internvl2_packed_collate_fn(samples)
    model.fused_loss = None
    reference = _run(model, batch)
    try:
        for kernel in ('auto', 'cudnn'):
            enable_packed_attention(model.model.language_model, kernel)
            model.set_recompute(True, keeps=('attention', 'down_proj'))
            _assert_close(reference, _run(model, batch))
    finally:
        enable_packed_attention(model.model.language_model, 'auto')
        model.set_recompute(True)


def test_frozen_vit_in_its_own_dtype_matches_the_autocast_vit_on_cuda(model_and_samples):
    """bf16 LayerNorm kernels (fp32 statistics) give the ViT features of autocast's fp32 LayerNorms."""
    from xtuner_ext.data.packing import internvl2_packed_collate_fn

    model, samples = model_and_samples
    pixels = internvl2_packed_collate_fn(samples)['data']['pixel_values'].cuda().bfloat16()
    features = {}
    with torch.no_grad(), torch.autocast('cuda', dtype=torch.bfloat16):
        for own_dtype in (False, True):
            model.frozen_vision_own_dtype = own_dtype
            features[own_dtype] = model._frozen_vision_tokens(pixels).float()
    error = (features[True] - features[False]).norm() / features[False].norm()
    assert error < 1e-2, error.item()
