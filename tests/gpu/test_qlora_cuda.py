"""The QLoRA model on a GPU: nf4 layers with bf16 compute, mixed precision, fp32 trainables.

Skipped without CUDA (CI has none); run on a GPU machine with `pytest tests/gpu`.
"""
import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')]

LORA = dict(r=16, lora_alpha=32, lora_dropout=0.0, task_type='CAUSAL_LM',
            target_modules=['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'])


@pytest.fixture(scope='module')
def embedded(tmp_path_factory):
    from xtuner_ext.data.sample import make_clot_sample
    from xtuner_ext.models.internvl2.tiny import make_tiny_model
    root = tmp_path_factory.mktemp('gpu')
    make_tiny_model(root / 'model', seed=0, max_dynamic_patch=2)
    return root / 'model', make_clot_sample(root / 'data', seed=0)


def test_qlora_trains_under_bf16_autocast_with_the_grad_scaler(embedded):
    import bitsandbytes as bnb
    from mmengine.optim import AmpOptimWrapper

    from xtuner_ext.data.internvl2_dataset import InternVL2ConversationDataset, internvl2_collate_fn
    from xtuner_ext.models.internvl2_qlora import InternVL2QLoRA

    model_dir, data_dir = embedded
    torch.manual_seed(0)
    model = InternVL2QLoRA(str(model_dir), quantization_llm=dict(quant_type='nf4', double_quant=True),
                           llm_lora=LORA, gradient_checkpointing=True)
    quantized = [m for m in model.model.language_model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert quantized and all(m.weight.device.type == 'cuda' and m.compute_dtype == torch.bfloat16 for m in quantized)
    assert model.model.vision_model.embeddings.patch_embedding.weight.dtype == torch.bfloat16
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(p.dtype == torch.float32 and p.is_cuda for p in trainable)

    dataset = InternVL2ConversationDataset(str(model_dir), str(data_dir / 'train.json'), max_length=1024,
                                           image_folder=str(data_dir), processor=dict(max_dynamic_patch=2))
    batch = internvl2_collate_fn([dataset[i] for i in range(4)])['data']
    batch = {k: v.cuda() if torch.is_tensor(v) else v for k, v in batch.items()}  # image_keys: a list
    wrapper = AmpOptimWrapper(optimizer=torch.optim.AdamW(trainable, lr=5e-3), dtype='bfloat16',
                              loss_scale='dynamic')
    losses = []
    for _ in range(12):
        with wrapper.optim_context(model):
            loss = model(batch, mode='loss')['loss']
        wrapper.update_params(loss)  # GradScaler.unscale_ on fp32 grads: the stock crash is bf16 here
        losses.append(loss.item())
    assert all(map(torch.isfinite, torch.tensor(losses)))
    assert sum(losses[-3:]) < sum(losses[:3]) * 0.8, losses
    answer = model.chat(str(data_dir / dataset.samples[0]['image']), '<image>\n请你根据这张图片，讲一个脑洞大开的梗')
    assert isinstance(answer, str)


def test_random_state_restores_from_a_checkpoint_loaded_onto_the_gpu(tmp_path):
    """mmengine resumes with map_location = the GPU; the generators only take CPU tensors."""
    from types import SimpleNamespace

    from xtuner_ext.engine.random_state_hook import RandomStateHook
    hook, checkpoint = RandomStateHook(), {}
    hook.before_save_checkpoint(None, checkpoint)
    expected = (torch.rand(3), torch.rand(3, device='cuda').cpu())
    torch.save(checkpoint, tmp_path / 'c.pth')
    loaded = torch.load(tmp_path / 'c.pth', map_location='cuda', weights_only=False)
    hook.after_load_checkpoint(SimpleNamespace(_resume=True), loaded)
    again = (torch.rand(3), torch.rand(3, device='cuda').cpu())
    assert all(torch.equal(a, b) for a, b in zip(expected, again))
