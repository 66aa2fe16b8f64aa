"""load_tokenizer gives the official tokenizers' ids and text (references in tests/fixtures), without remote code.

Decoding is checked on the *reference* ids, so encoding and decoding are tested independently.
"""
import json
import shutil
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file
from transformers import AutoTokenizer

from xtuner_ext.models.internvl2 import load_tokenizer
from xtuner_ext.models.internvl2 import tokenizer as tokenizer_module

FIXTURES = Path(__file__).resolve().parents[2] / 'fixtures'
INTERNLM2 = FIXTURES / 'internlm2_tokenizer'
REF = json.loads((INTERNLM2 / 'reference.json').read_text(encoding='utf-8'))

ENCODINGS = {
    'input_ids': lambda tok, text: tok(text).input_ids,
    'attention_mask': lambda tok, text: tok(text).attention_mask,
    'ids_no_special': lambda tok, text: tok.encode(text, add_special_tokens=False),
    'tokens': lambda tok, text: tok.tokenize(text),
}
DECODINGS = {  # reference field -> (the reference ids it decodes, skip_special_tokens)
    'decode': ('input_ids', False),
    'decode_skip_special': ('input_ids', True),
    'decode_no_bos': ('ids_no_special', False),
}
META = {
    'tokenizer_class': lambda tok: type(tok).__name__,
    'vocab_size': lambda tok: tok.vocab_size,
    'len_tokenizer': len,
    'bos_token_id': lambda tok: tok.bos_token_id,
    'eos_token_id': lambda tok: tok.eos_token_id,
    'pad_token_id': lambda tok: tok.pad_token_id,
    'unk_token_id': lambda tok: tok.unk_token_id,
    'padding_side_default': lambda tok: tok.padding_side,
    'all_special_tokens': lambda tok: tok.all_special_tokens,
    'all_special_ids': lambda tok: tok.all_special_ids,
    'special_token_ids': lambda tok: {t: tok.convert_tokens_to_ids(t) for t in REF['meta']['special_token_ids']},
    'convert_ids_to_tokens': lambda tok: {i: tok.convert_ids_to_tokens(int(i))
                                          for i in REF['meta']['convert_ids_to_tokens']},
}


def case_id(case):
    return f"{case['id']}-{case['category']}"


@pytest.fixture(scope='module')
def internlm2():
    return load_tokenizer(INTERNLM2)


@pytest.mark.parametrize('kind', ENCODINGS)
@pytest.mark.parametrize('case', REF['cases'], ids=case_id)
def test_internlm2_encodes_like_the_official(internlm2, case, kind):
    assert ENCODINGS[kind](internlm2, case['text']) == case[kind]


@pytest.mark.parametrize('kind', DECODINGS)
@pytest.mark.parametrize('case', REF['cases'], ids=case_id)
def test_internlm2_decodes_like_the_official(internlm2, case, kind):
    ids_field, skip = DECODINGS[kind]
    assert internlm2.decode(case[ids_field], skip_special_tokens=skip) == case[kind]


@pytest.mark.parametrize('skip', [False, True], ids=['decode', 'decode_skip_special'])
@pytest.mark.parametrize('case', REF['decode_cases'], ids=lambda c: c['note'][:60])
def test_internlm2_decodes_hand_picked_ids(internlm2, case, skip):
    assert internlm2.decode(case['ids'], skip_special_tokens=skip) == case['decode_skip_special' if skip else 'decode']


@pytest.mark.parametrize('case', REF['batch_padding'], ids=lambda c: c['padding_side'])
def test_internlm2_batch_padding(internlm2, case):
    default = internlm2.padding_side
    internlm2.padding_side = case['padding_side']
    try:
        batch = internlm2(case['texts'], padding=True)
    finally:
        internlm2.padding_side = default
    assert (batch.input_ids, batch.attention_mask) == (case['input_ids'], case['attention_mask'])


@pytest.mark.parametrize('case', REF['chat_template'], ids=lambda c: c['messages'][-1]['content'][:20])
def test_internlm2_chat_template(internlm2, case):
    kwargs = dict(add_generation_prompt=case['add_generation_prompt'])
    assert internlm2.apply_chat_template(case['messages'], tokenize=False, **kwargs) == case['text']
    assert internlm2.apply_chat_template(case['messages'], tokenize=True, **kwargs) == case['ids']


@pytest.mark.parametrize('key', META)
def test_internlm2_meta(internlm2, key):
    assert META[key](internlm2) == REF['meta'][key]


def copy_internlm2(tmp_path) -> Path:
    return Path(shutil.copytree(INTERNLM2, tmp_path / 'internlm2_tokenizer'))


def test_internlm2_never_runs_remote_code(tmp_path):
    assert not list(INTERNLM2.glob('*.py'))
    folder = copy_internlm2(tmp_path)
    (folder / 'tokenization_internlm2.py').write_text("raise RuntimeError('remote code was executed')\n")
    with pytest.raises(ValueError, match='trust_remote_code'):
        AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    case = REF['cases'][-1]
    assert load_tokenizer(folder)(case['text']).input_ids == case['input_ids']
    assert not [name for name in sys.modules if 'tokenization_internlm2' in name]


def test_internlm2_round_trips_through_save_pretrained(internlm2, tmp_path):
    internlm2.save_pretrained(tmp_path)
    reloaded, case = load_tokenizer(tmp_path), REF['cases'][-1]
    assert type(reloaded) is type(internlm2)
    assert reloaded(case['text']).input_ids == case['input_ids']
    assert reloaded.decode(case['input_ids']) == case['decode']


@pytest.mark.parametrize('tokenizer_class', ['BaichuanTokenizer', None])
def test_unknown_sentencepiece_tokenizer_class_is_an_error(tmp_path, tokenizer_class):
    folder = copy_internlm2(tmp_path)
    config = json.loads((folder / 'tokenizer_config.json').read_text(encoding='utf-8'))
    config['tokenizer_class'] = tokenizer_class
    (folder / 'tokenizer_config.json').write_text(json.dumps(config), encoding='utf-8')
    message = rf"internlm2_tokenizer: tokenizer_class {tokenizer_class!r} in tokenizer_config.json has no exact loader"
    with pytest.raises(ValueError, match=message):
        load_tokenizer(folder)


@pytest.mark.parametrize('folder, tokenizer_class', [
    ('internvl2_tiny', 'PreTrainedTokenizerFast'),  # InternLM2-style, tokenizer.json
    ('internvl2_tiny_qwen2', 'PreTrainedTokenizerFast'),  # Qwen2: fast == official slow here
    ('internvl2_tiny_phi3', 'LlamaTokenizer'),  # slow, legacy: false (a lone '▁' after <s>)
])
def test_model_folders_give_the_official_prompt_ids(folder, tokenizer_class):
    ref = json.loads((FIXTURES / folder / 'reference.json').read_text(encoding='utf-8'))
    expected = load_file(str(FIXTURES / folder / 'reference.safetensors'))['input_ids'][0].tolist()
    tokenizer = load_tokenizer(FIXTURES / folder)
    assert type(tokenizer).__name__ == tokenizer_class
    assert tokenizer(ref['prompt']).input_ids == expected
    output_ids = ref.get('chat_output_ids', ref['generate_output_ids'])
    assert tokenizer.decode(output_ids, skip_special_tokens=True) == ref['chat_output']


def test_phi3_without_protobuf_names_the_fix(monkeypatch):
    monkeypatch.setattr(tokenizer_module, 'is_protobuf_available', lambda: False)
    with pytest.raises(ImportError, match=r'internvl2_tiny_phi3/tokenizer_config.json has "legacy": false.*'
                                          r'pip install protobuf'):
        load_tokenizer(FIXTURES / 'internvl2_tiny_phi3')
