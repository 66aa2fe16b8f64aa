"""The embedded demo model's tokenizer spells every character of the sample as one token."""
import pytest

from xtuner_ext.data.sample import JOKES, sample_texts
from xtuner_ext.models.internvl2.tiny import EMBEDDED_VOCAB_SIZE, build_tokenizer


def test_every_sample_character_is_one_token_and_jokes_round_trip():
    tokenizer = build_tokenizer(extra_texts=sample_texts(), vocab_size=EMBEDDED_VOCAB_SIZE)
    assert len(tokenizer) == EMBEDDED_VOCAB_SIZE + 11  # + the added special tokens
    for character in sorted({c for text in sample_texts() for c in text if not c.isspace()}):
        assert len(tokenizer(character, add_special_tokens=False)['input_ids']) == 1, character
    for _, joke in JOKES:
        ids = tokenizer(joke, add_special_tokens=False)['input_ids']
        assert tokenizer.decode(ids) == joke
        assert all('\ufffd' not in tokenizer.decode([i]) for i in ids)  # no token is a stray UTF-8 byte


def test_too_small_a_vocabulary_is_an_error_that_says_so():
    with pytest.raises(ValueError, match='raise vocab_size'):
        build_tokenizer(extra_texts=sample_texts(), vocab_size=512)
