"""Training ids of a multi-turn record are the ids of the whole conversation text, for every LLM family's
tokenizer (as the official training code tokenizes it). Phi-3's non-legacy sentencepiece tokenizer would
otherwise put a dummy-prefix piece in front of each answer and each later prompt."""
from pathlib import Path

import pytest

from xtuner_ext.models.internvl2 import InternVL2Processor, InternVLChatConfig, load_tokenizer
from xtuner_ext.models.internvl2.conversation import with_images
from xtuner_ext.models.internvl2.encoding import IGNORE_INDEX, continuation_ids

FIXTURES = Path(__file__).resolve().parents[1] / 'fixtures'
# Not covered: an answer starting with a newline, which a BPE may merge with the newline that ends the
# prompt ('assistant\n'): the prompt/answer split cannot follow a merge across it (nor can the official masks).
ANSWERS = [' 这只猫会说话 hello\n', '这只猫', 'hello world', '1 2 3\n\n']


def processor(name: str) -> InternVL2Processor:
    if name == 'internlm2_tokenizer':  # the real InternLM2 sentencepiece layout, with the 2B's config
        return InternVL2Processor(load_tokenizer(FIXTURES / name),
                                  InternVLChatConfig.from_pretrained(FIXTURES / 'internvl2_tiny'))
    return InternVL2Processor.from_pretrained(FIXTURES / name)


@pytest.fixture(scope='module', params=['internvl2_tiny_phi3', 'internvl2_tiny_qwen2', 'internvl2_tiny',
                                        'internlm2_tokenizer'])
def family(request):
    return processor(request.param)


def record(first_answer: str) -> dict:
    return {'image': 'x.jpg', 'conversations': [
        {'from': 'human', 'value': '<image>\n请讲一个笑话。'}, {'from': 'gpt', 'value': first_answer},
        {'from': 'human', 'value': '\nAnother one?'}, {'from': 'gpt', 'value': 'My diet starts tomorrow.'}]}


@pytest.mark.parametrize('first_answer', ANSWERS)
def test_multi_turn_ids_are_the_whole_conversations_ids(family, first_answer):
    rec = record(first_answer)
    encoded = family.encode(rec, num_tiles=2, max_length=1 << 20)
    turns = [(q['value'], a['value']) for q, a in zip(rec['conversations'][::2], rec['conversations'][1::2])]
    whole = family.template.render(with_images(turns, [2], family.num_image_token), family.system_message)
    assert encoded.input_ids == family.tokenizer(whole)['input_ids']
    learned = family.tokenizer.decode([t for t in encoded.labels if t != IGNORE_INDEX])
    sep = family.template.sep
    expected = first_answer + sep + 'My diet starts tomorrow.' + sep
    assert ''.join(learned.split()) == ''.join(expected.split())  # decoding may move whitespace, not text


def test_phi3_pieces_alone_would_carry_an_extra_prefix():
    """The failure this guards against: alone, each Phi-3 piece starts with a lone dummy-prefix piece."""
    phi3 = processor('internvl2_tiny_phi3').tokenizer
    alone = phi3('My diet', add_special_tokens=False)['input_ids']
    assert phi3.convert_ids_to_tokens(alone)[0] == '\u2581'
    assert continuation_ids(phi3, 'My diet', '<|end|>') == alone[1:]


def test_anchor_must_be_a_special_token():
    qwen2 = processor('internvl2_tiny_qwen2').tokenizer
    with pytest.raises(ValueError, match="'hello' is not a special token of .*add_special_tokens"):
        continuation_ids(qwen2, 'world', 'hello')
