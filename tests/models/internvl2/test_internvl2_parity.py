"""Numerical parity with the official InternVL2 code (reference outputs in the shared fixture)."""
import torch

from xtuner_ext.models.internvl2 import InternVLChatModel, build_chat_prompt, load_tokenizer


def test_prompt_and_input_ids_match_official(fixture_dir, reference):
    ref, tensors = reference
    prompt = build_chat_prompt(ref['question'], num_patches_list=[2], num_image_token=ref['num_image_token'])
    assert prompt == ref['prompt']
    tokenizer = load_tokenizer(fixture_dir)
    assert torch.equal(tokenizer(prompt, return_tensors='pt').input_ids, tensors['input_ids'])


def test_num_image_token_and_attributes(fixture_dir, reference):
    ref, _ = reference
    model = InternVLChatModel.from_pretrained(fixture_dir)
    assert model.num_image_token == ref['num_image_token'] == 256
    assert model.template == 'internlm2-chat' and model.ps_version == 'v2' and model.select_layer == -1
    assert model.img_context_token_id is None  # like the official, set by chat() or by the caller


def test_extract_feature_within_1e5(fp32_model, reference):
    _, tensors = reference
    with torch.no_grad():
        vit_embeds = fp32_model.extract_feature(tensors['pixel_values'].float())
    assert vit_embeds.shape == tensors['vit_embeds'].shape
    assert (vit_embeds - tensors['vit_embeds']).abs().max().item() < 1e-5


def test_forward_logits_within_1e4(fp32_model, reference):
    ref, tensors = reference
    fp32_model.img_context_token_id = ref['img_context_token_id']
    with torch.no_grad():
        out = fp32_model(tensors['pixel_values'].float(), tensors['input_ids'], tensors['attention_mask'],
                         image_flags=tensors['image_flags'], return_dict=True)
    assert out.logits.shape == tensors['logits'].shape
    assert (out.logits - tensors['logits']).abs().max().item() < 1e-4


def test_greedy_generate_ids_identical(fp32_model, reference):
    ref, tensors = reference
    fp32_model.img_context_token_id = ref['img_context_token_id']
    ids = fp32_model.generate(pixel_values=tensors['pixel_values'].float(), input_ids=tensors['input_ids'],
                              attention_mask=tensors['attention_mask'], max_new_tokens=8, do_sample=False,
                              eos_token_id=ref['eos_token_id_used'])
    assert ids.tolist() == [ref['generate_output_ids']]  # new tokens only, as the official generate


def test_chat_text_identical_and_history(fixture_dir, fp32_model, reference):
    ref, tensors = reference
    tokenizer = load_tokenizer(fixture_dir)
    pixel_values = tensors['pixel_values'].float()
    config = dict(max_new_tokens=8, do_sample=False)
    assert fp32_model.chat(tokenizer, pixel_values, ref['question'], config) == ref['chat_output']
    assert config == dict(max_new_tokens=8, do_sample=False)  # the caller's dict is not mutated
    # Without '<image>' the question gets one in front, as in the official chat().
    response, history = fp32_model.chat(tokenizer, pixel_values, ref['question'].split('\n', 1)[1], config,
                                        return_history=True)
    assert response == ref['chat_output']
    assert history == [(ref['question'], ref['chat_output'])]


def test_bf16_forward_close_to_fp32_reference(fixture_dir, reference):
    ref, tensors = reference
    model = InternVLChatModel.from_pretrained(fixture_dir)  # checkpoint dtype: bfloat16
    assert model.dtype == torch.bfloat16
    model.img_context_token_id = ref['img_context_token_id']
    with torch.no_grad():
        logits = model(tensors['pixel_values'].float(), tensors['input_ids'], image_flags=tensors['image_flags']).logits
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits).all()
    assert (logits.float() - tensors['logits']).abs().max().item() < 0.1
