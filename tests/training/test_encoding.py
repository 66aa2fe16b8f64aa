"""InternVL2Processor.encode: training tokens = chat() prompt + learned answer, truncation rules."""
import pytest

from training_helpers import IGNORE, label_runs
from xtuner_ext.models.internvl2 import InternVL2Processor, SampleTooLongError, build_chat_prompt

QUESTION = '<image>\n请你根据这张图片，讲一个脑洞大开的梗'
ANSWER = '太阳：我每天准时上班，你们却只会说我晒。'
# From the official InternVL2 conversation.py (internlm2-chat template), not from this project.
OFFICIAL_SYSTEM = ('<|im_start|>system\n你是由上海人工智能实验室联合商汤科技开发的书生多模态大模型，英文名叫InternVL, '
                   '是一个有用无害的人工智能助手。<|im_end|>')


def record(*turns, image='x.jpg'):
    conversations = []
    for question, answer in turns:
        conversations += [dict(**{'from': 'human', 'value': question}), dict(**{'from': 'gpt', 'value': answer})]
    out = dict(conversations=conversations)
    if image:
        out['image'] = image
    return out


def encode(rec, tokenizer, model_config, tiles=3, max_length=4096):
    return InternVL2Processor(tokenizer, model_config).encode(rec, tiles, max_length)


def img_context_count(ids, tokenizer):
    return ids.count(tokenizer.convert_tokens_to_ids('<IMG_CONTEXT>'))


@pytest.mark.parametrize('question', [QUESTION, '请你讲一个梗'])  # with and without the <image> tag
def test_first_prompt_equals_chat_prompt(tokenizer, model_config, question):
    tiles, n_img = 3, model_config.num_image_token
    enc = encode(record((question, ANSWER)), tokenizer, model_config, tiles)
    chat_ids = tokenizer(build_chat_prompt(question, None, [tiles], n_img, model_config.template))['input_ids']
    assert enc.input_ids[:len(chat_ids)] == chat_ids
    assert enc.labels[:len(chat_ids)] == [IGNORE] * len(chat_ids)
    assert enc.labels[len(chat_ids)] != IGNORE  # the answer starts right after the prompt
    prompt_text = tokenizer.decode(chat_ids)
    assert prompt_text.startswith('<s>' + OFFICIAL_SYSTEM + '<|im_start|>user\n')
    assert 'InternLM' not in prompt_text  # not XTuner's InternLM2 system message
    assert img_context_count(enc.input_ids, tokenizer) == tiles * n_img
    assert not enc.truncated and enc.num_tiles == tiles


def test_labels_cover_answer_and_im_end_only(tokenizer, model_config):
    enc = encode(record((QUESTION, ANSWER)), tokenizer, model_config)
    runs = label_runs(enc.labels)
    assert len(runs) == 1 and runs[0][1] == len(enc.input_ids)
    start, end = runs[0]
    assert enc.labels[start:end] == enc.input_ids[start:end]
    assert tokenizer.decode(enc.input_ids[start:end]) == ANSWER + '<|im_end|>'
    assert enc.input_ids[-1] == tokenizer.convert_tokens_to_ids('<|im_end|>')
    assert len(enc.labels) == len(enc.input_ids)


def test_multi_turn(tokenizer, model_config):
    turns = [(QUESTION, ANSWER), ('再来一个', '月亮：今天只上半天班。'), ('最后一个', '云：先哭为敬。')]
    tiles, n_img = 1, model_config.num_image_token
    enc = encode(record(*turns), tokenizer, model_config, tiles)
    # The whole sequence reads as the official template rendering of the conversation.
    first_q = turns[0][0].replace('<image>', '<img>' + '<IMG_CONTEXT>' * (tiles * n_img) + '</img>')
    text = '<s>' + OFFICIAL_SYSTEM
    for i, (q, a) in enumerate(turns):
        question = first_q if i == 0 else q
        text += '<|im_start|>user\n' + question + '<|im_end|><|im_start|>assistant\n' + a + '<|im_end|>'
    assert tokenizer.decode(enc.input_ids) == text
    runs = label_runs(enc.labels)
    assert [tokenizer.decode(enc.input_ids[s:e]) for s, e in runs] == [a + '<|im_end|>' for _, a in turns]
    for s, e in runs:
        assert enc.labels[s:e] == enc.input_ids[s:e]
    # Everything between answers (the next user turn and the assistant header) is ignored.
    between = enc.input_ids[runs[0][1]:runs[1][0]]
    assert tokenizer.decode(between) == '<|im_start|>user\n' + turns[1][0] + '<|im_end|><|im_start|>assistant\n'
    assert img_context_count(enc.input_ids, tokenizer) == tiles * n_img  # image only in the first turn


def test_long_answer_is_cut_image_block_kept(tokenizer, model_config):
    tiles, n_img = 3, model_config.num_image_token
    full = encode(record((QUESTION, ANSWER * 20)), tokenizer, model_config, tiles)
    prompt_len = label_runs(full.labels)[0][0]
    enc = encode(record((QUESTION, ANSWER * 20)), tokenizer, model_config, tiles, max_length=prompt_len + 5)
    assert enc.truncated and len(enc.input_ids) == prompt_len + 5
    assert enc.input_ids == full.input_ids[:prompt_len + 5] and enc.labels == full.labels[:prompt_len + 5]
    assert sum(label != IGNORE for label in enc.labels) == 5
    assert img_context_count(enc.input_ids, tokenizer) == tiles * n_img


def test_later_turns_dropped_before_first_answer_is_cut(tokenizer, model_config):
    turns = [(QUESTION, ANSWER), ('再来一个', '月亮：今天只上半天班，剩下的半边请明天再来。')]
    one = encode(record(turns[0]), tokenizer, model_config)
    two = encode(record(*turns), tokenizer, model_config)
    assert len(two.input_ids) > len(one.input_ids)
    # Room for the first turn and part of the second: the second turn goes whole, nothing is cut.
    for max_length in (len(one.input_ids), len(two.input_ids) - 1):
        enc = encode(record(*turns), tokenizer, model_config, max_length=max_length)
        assert (enc.input_ids, enc.labels) == (one.input_ids, one.labels)
        assert enc.truncated
    fits = encode(record(*turns), tokenizer, model_config, max_length=len(two.input_ids))
    assert fits.input_ids == two.input_ids and not fits.truncated
    # Less room than the first turn: only then is the first answer shortened.
    cut = encode(record(*turns), tokenizer, model_config, max_length=len(one.input_ids) - 2)
    assert cut.truncated and cut.input_ids == one.input_ids[:-2]


def test_first_prompt_longer_than_max_length_raises(tokenizer, model_config):
    tiles = 3
    enc = encode(record((QUESTION, ANSWER)), tokenizer, model_config, tiles)
    prompt_len = label_runs(enc.labels)[0][0]
    assert prompt_len > tiles * model_config.num_image_token
    with pytest.raises(SampleTooLongError, match=rf'first prompt alone is {prompt_len} tokens \(3 image tiles'):
        encode(record((QUESTION, ANSWER)), tokenizer, model_config, tiles, max_length=prompt_len - 1)
    # A prompt that just fits keeps at least one answer token.
    enc = encode(record((QUESTION, ANSWER)), tokenizer, model_config, tiles, max_length=prompt_len + 1)
    assert sum(label != IGNORE for label in enc.labels) == 1


def test_text_only_record_has_no_image_tokens(tokenizer, model_config):
    enc = encode(record(('讲一个梗', ANSWER), image=None), tokenizer, model_config, tiles=3)
    assert enc.num_tiles == 0 and img_context_count(enc.input_ids, tokenizer) == 0
    chat_ids = tokenizer(build_chat_prompt('讲一个梗', None, [], model_config.num_image_token))['input_ids']
    assert enc.input_ids[:len(chat_ids)] == chat_ids
