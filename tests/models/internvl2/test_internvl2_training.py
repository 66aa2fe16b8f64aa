"""Training-side behaviour: loss, image_flags, gradient checkpointing, dtype."""
import copy

import pytest
import torch

from xtuner_ext.models.internvl2 import InternVLChatModel, build_chat_prompt, load_tokenizer


@pytest.fixture
def batch(tiny_dir):
    model = InternVLChatModel.from_pretrained(tiny_dir, torch_dtype=torch.float32)
    tokenizer = load_tokenizer(tiny_dir)
    model.img_context_token_id = tokenizer.convert_tokens_to_ids('<IMG_CONTEXT>')
    prompt = build_chat_prompt('what is it?', num_patches_list=[1], num_image_token=model.num_image_token)
    ids = tokenizer(prompt + 'a cat<|im_end|>', return_tensors='pt').input_ids
    labels = ids.clone()
    labels[:, :-4] = -100
    pixel_values = torch.randn(2, 3, 448, 448, generator=torch.Generator().manual_seed(0))
    return model, dict(pixel_values=pixel_values, input_ids=ids, labels=labels, image_flags=torch.tensor([[1], [0]]))


def _grads(model, inputs):
    model.train()
    model.zero_grad()
    loss = model(**inputs).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_loss_ignores_masked_labels_and_padding_tiles(batch):
    model, inputs = batch
    loss, grads = _grads(model, inputs)
    logits = model(**{k: v for k, v in inputs.items() if k != 'labels'}).logits
    expected = torch.nn.functional.cross_entropy(logits[0, -5:-1], inputs['input_ids'][0, -4:])
    assert torch.allclose(loss, expected, atol=1e-6)
    assert 'vision_model.encoder.layers.0.attn.qkv.weight' in grads and 'mlp1.1.weight' in grads


def test_gradient_checkpointing_gives_the_same_grads(batch):
    model, inputs = batch
    reference_loss, reference = _grads(model, inputs)
    checkpointed = copy.deepcopy(model)
    checkpointed.gradient_checkpointing_enable()
    assert checkpointed.vision_model.encoder.gradient_checkpointing
    assert checkpointed.language_model.is_gradient_checkpointing
    loss, grads = _grads(checkpointed, inputs)
    assert torch.equal(loss, reference_loss)
    assert grads.keys() == reference.keys()
    for name in reference:
        assert torch.allclose(grads[name], reference[name], atol=1e-6), name
    checkpointed.gradient_checkpointing_disable()
    assert not checkpointed.language_model.is_gradient_checkpointing


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_half_precision_training_step_runs(tiny_dir, batch, dtype):
    _, inputs = batch
    model = InternVLChatModel.from_pretrained(tiny_dir, torch_dtype=dtype)
    model.img_context_token_id = batch[0].img_context_token_id
    loss, grads = _grads(model, inputs)
    assert torch.isfinite(loss) and all(g.dtype == dtype for g in grads.values())


def test_language_model_is_a_plain_transformers_model(tiny_dir):
    from transformers import LlamaForCausalLM

    model = InternVLChatModel.from_pretrained(tiny_dir)
    assert type(model.language_model) is LlamaForCausalLM
    assert model.language_model.config._attn_implementation == 'sdpa'
    linears = {n for n, m in model.language_model.named_modules() if isinstance(m, torch.nn.Linear)}
    assert 'model.layers.0.self_attn.q_proj' in linears and 'lm_head' in linears


def test_peft_lora_on_the_language_model_trains_under_checkpointing(batch):
    """The setup QLoRA builds on: frozen towers, LoRA on language_model, checkpointing on."""
    from peft import LoraConfig, get_peft_model

    model, inputs = batch
    model.requires_grad_(False)
    model.language_model = get_peft_model(model.language_model, LoraConfig(
        r=4, lora_alpha=8, target_modules=['q_proj', 'k_proj', 'v_proj', 'o_proj'], task_type='CAUSAL_LM'))
    model.gradient_checkpointing_enable()
    model.enable_input_require_grads()
    _, grads = _grads(model, inputs)
    assert grads and all('lora_' in name for name in grads)
    assert any(g.abs().sum() > 0 for name, g in grads.items() if 'lora_A' in name or 'lora_B' in name)
    with pytest.raises(ValueError, match='Merge or drop adapter weights'):
        model.official_state_dict()
