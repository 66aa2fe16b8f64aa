"""Parity with the official InternVL2 code for each LLM family and vision tower other than the 2B's.

One table of tiny official-layout checkpoints (``tests/fixtures/*/README.md`` say how each reference
was made): InternVL2-1B's Qwen2 + ``Hermes-2``, InternVL2-4B's Phi-3 + ``phi3-chat``, and a 26B-shaped
model whose InternViT-6B-style tower uses RMSNorm and q/k normalisation. Each must give the official
prompt and ids, ViT features, logits, greedy ids and chat text, and save back to the same bytes.
"""
import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from xtuner_ext.models.internvl2 import InternVL2Processor, InternVLChatModel

FIXTURES = Path(__file__).resolve().parents[2] / 'fixtures'
CASES = {  # fixture folder -> (LLM architecture, template)
    'internvl2_tiny_qwen2': ('Qwen2ForCausalLM', 'Hermes-2'),
    'internvl2_tiny_phi3': ('Phi3ForCausalLM', 'phi3-chat'),
    'internvl2_tiny_vit6b': ('InternLM2ForCausalLM', 'internlm2-chat'),
}


@pytest.fixture(scope='module', params=sorted(CASES))
def case(request):
    folder = FIXTURES / request.param
    reference = json.loads((folder / 'reference.json').read_text(encoding='utf-8'))
    tensors = load_file(str(folder / 'reference.safetensors'))
    model = InternVLChatModel.from_pretrained(folder, torch_dtype=torch.float32)
    model.img_context_token_id = reference['img_context_token_id']
    return request.param, folder, reference, tensors, model


def test_architecture_and_template(case):
    name, _, ref, _, model = case
    assert (model.llm_arch_name, model.template) == CASES[name]
    assert model.num_image_token == ref['num_image_token']
    vision = model.config.vision
    if name == 'internvl2_tiny_vit6b':  # the InternViT-6B layout, not the 300M one
        assert (vision.norm_type, vision.qk_normalization, vision.qkv_bias) == ('rms_norm', True, False)
        assert model.vision_model.encoder.layers[0].attn.q_norm.weight.shape == (vision.hidden_size,)


def test_processor_prompt_and_ids_match_official(case):
    _, folder, ref, tensors, _ = case
    processor = InternVL2Processor.from_pretrained(folder)
    prompt = processor.prompt(ref['question'], None, [tensors['pixel_values'].shape[0]])
    assert prompt == ref['prompt']
    assert torch.equal(processor.tokenizer(prompt, return_tensors='pt').input_ids, tensors['input_ids'])
    assert processor.img_context_token_id == ref['img_context_token_id']
    assert processor.tokenizer.convert_tokens_to_ids(processor.stop_token) == ref['eos_token_id_used']


def test_vit_features_within_1e5(case):
    _, _, _, tensors, model = case
    with torch.no_grad():
        vit_embeds = model.extract_feature(tensors['pixel_values'].float())
    assert vit_embeds.shape == tensors['vit_embeds'].shape
    assert (vit_embeds - tensors['vit_embeds']).abs().max().item() < 1e-5


def test_logits_within_1e4(case):
    _, _, _, tensors, model = case
    with torch.no_grad():
        logits = model(tensors['pixel_values'].float(), tensors['input_ids'], tensors['attention_mask'],
                       image_flags=tensors['image_flags'], return_dict=True).logits
    assert logits.shape == tensors['logits'].shape
    assert (logits - tensors['logits']).abs().max().item() < 1e-4


def test_greedy_ids_identical(case):
    _, _, ref, tensors, model = case
    ids = model.generate(pixel_values=tensors['pixel_values'].float(), input_ids=tensors['input_ids'],
                         attention_mask=tensors['attention_mask'], max_new_tokens=8, do_sample=False,
                         eos_token_id=ref['eos_token_id_used'])
    assert ids.tolist() == [ref['generate_output_ids']]


def test_chat_text_identical(case):
    _, folder, ref, tensors, model = case
    tokenizer = InternVL2Processor.from_pretrained(folder).tokenizer
    answer = model.chat(tokenizer, tensors['pixel_values'].float(), ref['question'],
                        dict(max_new_tokens=8, do_sample=False))
    assert answer == ref['chat_output']


def test_official_names_order_and_shapes(case):
    _, _, ref, _, model = case
    official = model.official_state_dict()
    assert list(official) == ref['state_dict_keys']
    assert {k: list(v.shape) for k, v in official.items()} == ref['state_dict_shapes']


def test_load_save_is_bit_exact(case, tmp_path):
    _, folder, ref, _, _ = case
    InternVLChatModel.from_pretrained(folder).save_pretrained(tmp_path)  # in the checkpoint's bf16
    assert hashlib.sha256((tmp_path / 'model.safetensors').read_bytes()).hexdigest() == ref['model_safetensors_sha256']
    for name in ('model.safetensors', 'config.json', 'generation_config.json'):
        assert (tmp_path / name).read_bytes() == (folder / name).read_bytes(), name


def test_rope_tables_move_with_the_model():
    """Phi-3's long-RoPE swaps ``original_inv_freq`` back in at every forward: it must follow ``.to()``."""
    from xtuner_ext.models.internvl2 import InternVLChatModel

    model = InternVLChatModel.from_pretrained(FIXTURES / 'internvl2_tiny_phi3')
    rotary = [m for m in model.modules() if type(m).__name__.endswith('RotaryEmbedding')]
    assert rotary and all(m._buffers.keys() >= {'inv_freq', 'original_inv_freq'} for m in rotary)
    model.to(torch.float64)  # any .to() reaches buffers; on a GPU this is the device move
    assert all(m.original_inv_freq.dtype == torch.float64 for m in rotary)
