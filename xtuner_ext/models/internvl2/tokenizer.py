"""Load an InternVL2 tokenizer exactly as the official code does, without remote code; check its image tokens.

The official code loads with ``AutoTokenizer.from_pretrained(path, trust_remote_code=True, use_fast=False)``,
so a folder's *slow* sentencepiece class is the reference when it has ``tokenizer.model``:

* ``InternLM2Tokenizer`` (remote code in the real checkpoints) -> :class:`InternLM2Tokenizer` below;
* ``LlamaTokenizer`` (e.g. Phi-3 in InternVL2-4B) -> transformers' ``LlamaTokenizer`` with the folder's own
  settings (``legacy: false`` needs ``protobuf``; its converted fast tokenizer gives other ids).

Any other folder needs a ``tokenizer.json`` (``PreTrainedTokenizerFast``, equal to the official fast or slow
BPE tokenizers, e.g. Qwen2). Anything else is an error, never a best-effort guess.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Union

from transformers import LlamaTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast
from transformers.utils import is_protobuf_available

from .conversation import IMG_CONTEXT_TOKEN, IMG_END_TOKEN, IMG_START_TOKEN

IMAGE_TOKENS = (IMG_START_TOKEN, IMG_END_TOKEN, IMG_CONTEXT_TOKEN)
SENTENCEPIECE_CLASSES = ('InternLM2Tokenizer', 'LlamaTokenizer')


def require_image_tokens(tokenizer: PreTrainedTokenizerBase, source: str = 'the tokenizer') -> Dict[str, int]:
    """Ids of ``<img>``, ``</img>``, ``<IMG_CONTEXT>``; ``ValueError`` naming any that is missing."""
    vocab = tokenizer.get_vocab()
    missing = [token for token in IMAGE_TOKENS if token not in vocab]
    if missing:
        raise ValueError(f'{source} has no {", ".join(missing)} token(s): InternVL2 needs {list(IMAGE_TOKENS)} '
                         'as special tokens. Use the tokenizer of an InternVL2 checkpoint, or add them with '
                         'tokenizer.add_special_tokens(...) and resize the LLM embeddings.')
    return {token: vocab[token] for token in IMAGE_TOKENS}


def load_tokenizer(path: Union[str, Path]) -> PreTrainedTokenizerBase:
    """The tokenizer of an InternVL2 folder (same ids and text as the official one), checked for image tokens."""
    tokenizer = load_text_tokenizer(path)
    require_image_tokens(tokenizer, source=f'tokenizer in {path}')
    return tokenizer


def load_text_tokenizer(path: Union[str, Path]) -> PreTrainedTokenizerBase:
    """The official tokenizer of a folder without remote code; no image tokens needed (plain InternLM2 LLMs)."""
    path = Path(path)
    config = _tokenizer_config(path)
    tokenizer_class = config.get('tokenizer_class')
    if tokenizer_class in SENTENCEPIECE_CLASSES and (path / 'tokenizer.model').is_file():
        tokenizer = _load_sentencepiece(path, tokenizer_class, config)
    elif (path / 'tokenizer.json').is_file():
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(path))
    elif (path / 'tokenizer.model').is_file():
        raise ValueError(f'{path}: tokenizer_class {tokenizer_class!r} in tokenizer_config.json has no exact loader '
                         f'without remote code (sentencepiece classes supported: {", ".join(SENTENCEPIECE_CLASSES)}). '
                         'Save the official tokenizer with a tokenizer.json (its fast version) into the folder.')
    else:
        raise FileNotFoundError(f'{path} has no tokenizer.json or tokenizer.model')
    return tokenizer


def _tokenizer_config(path: Path) -> dict:
    config = path / 'tokenizer_config.json'
    return json.loads(config.read_text(encoding='utf-8')) if config.is_file() else {}


def _load_sentencepiece(path: Path, tokenizer_class: str, config: dict) -> PreTrainedTokenizerBase:
    if tokenizer_class == 'InternLM2Tokenizer':
        return InternLM2Tokenizer.from_pretrained(str(path))
    if config.get('legacy') is False and not is_protobuf_available():
        raise ImportError(f'{path / "tokenizer_config.json"} has "legacy": false: its LlamaTokenizer rewrites '
                          'tokenizer.model with protobuf, which is not installed (pip install protobuf)')
    return LlamaTokenizer.from_pretrained(str(path))


class InternLM2Tokenizer(LlamaTokenizer):
    """InternLM2's slow tokenizer without its remote code.

    Encoding is a plain ``SentencePieceProcessor.encode`` of the text between added tokens: exactly what
    ``LlamaTokenizer(legacy=True)`` does (the model itself has no dummy prefix). Decoding is not Llama's:
    InternLM2 puts a space before every run of in-vocab special tokens (``" <s>..."``), always applies
    ``clean_up_tokenization`` and joins out-of-vocab added tokens with spaces; this class reproduces that
    (InternLM2's ``_maybe_add_prefix_space`` and its final ``[1:]`` cancel out: its id-vs-str test is always true).
    """

    def __init__(self, vocab_file, pad_token='</s>', **kwargs):
        kwargs.update(legacy=True, add_prefix_space=False)  # Llama options that InternLM2's code does not have
        kwargs.setdefault('spaces_between_special_tokens', True)  # the PreTrainedTokenizer default
        super().__init__(vocab_file, pad_token=pad_token, **kwargs)

    def convert_tokens_to_string(self, tokens: List[str]) -> str:
        special, pieces, text, after_special = set(self.all_special_tokens), [], '', False
        for token in tokens:
            if token in special:
                text += ('' if after_special else ' ') + self.sp_model.decode(pieces) + token
                pieces, after_special = [], True
            else:
                pieces.append(token)
                after_special = False
        return self.clean_up_tokenization(text + self.sp_model.decode(pieces))
