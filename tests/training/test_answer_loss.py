"""The fused loss's padded head (``answer_loss.aligned_head``) changes nothing: the padded rows'
logits vanish from the softmax, so loss and gradients equal the unpadded head's (CPU, fp32 and bf16
logits). The Liger kernel itself on the padded head: tests/gpu/test_speed_levers_cuda.py."""
import pytest
import torch
import torch.nn.functional as F

from xtuner_ext.models.answer_loss import aligned_head


def _loss_and_grads(weight, bias, inputs, targets, dtype):
    inputs = inputs.clone().requires_grad_()
    weight = weight.clone().requires_grad_()
    padded_weight, padded_bias = aligned_head(weight.to(dtype), None if bias is None else bias.to(dtype), 128)
    logits = F.linear(inputs.to(dtype), padded_weight, padded_bias).float()
    loss = F.cross_entropy(logits, targets)
    loss.backward()
    return loss.detach(), inputs.grad, weight.grad, padded_weight.shape[0]


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
@pytest.mark.parametrize('with_bias', [False, True])
def test_padded_head_gives_the_unpadded_loss_and_gradients(dtype, with_bias):
    generator = torch.Generator().manual_seed(0)
    vocab, hidden = 301, 32  # odd, as InternLM2's 92,553
    weight = torch.randn(vocab, hidden, generator=generator)
    bias = torch.randn(vocab, generator=generator) if with_bias else None
    inputs = torch.randn(20, hidden, generator=generator) * 0.05  # small logits: a 0 logit would count
    targets = torch.randint(0, vocab, (20,), generator=generator)
    loss, grad_inputs, grad_weight, rows = _loss_and_grads(weight, bias, inputs, targets, dtype)
    assert rows == 384
    reference_inputs = inputs.clone().requires_grad_()
    reference_weight = weight.clone().requires_grad_()
    logits = F.linear(reference_inputs.to(dtype), reference_weight.to(dtype),
                      None if bias is None else bias.to(dtype)).float()
    reference = F.cross_entropy(logits, targets)
    reference.backward()
    assert torch.equal(loss, reference.detach())
    assert torch.equal(grad_inputs, reference_inputs.grad)
    assert torch.equal(grad_weight, reference_weight.grad)  # a trainable head's real rows still learn


def test_an_aligned_head_is_passed_through_untouched():
    weight = torch.randn(256, 8)
    padded, bias = aligned_head(weight, None, 128)
    assert padded is weight and bias is None
