"""Load an InternVL2 tokenizer without remote code, and check its image tokens.

``tokenizer.json`` -> ``PreTrainedTokenizerFast`` (exact). Real InternLM2 folders ship only the
sentencepiece ``tokenizer.model`` with an ``InternLM2Tokenizer`` remote-code class; for those a
best-effort ``LlamaTokenizer`` (sentencepiece, BOS prepended, no dummy prefix handling) is used.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Union

from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from .conversation import IMG_CONTEXT_TOKEN, IMG_END_TOKEN, IMG_START_TOKEN

IMAGE_TOKENS = (IMG_START_TOKEN, IMG_END_TOKEN, IMG_CONTEXT_TOKEN)


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
    """The tokenizer of an InternVL2 folder, checked for the image tokens."""
    path = Path(path)
    if (path / 'tokenizer.json').is_file():
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(path))
    elif (path / 'tokenizer.model').is_file():
        from transformers import LlamaTokenizer  # needs sentencepiece

        tokenizer = LlamaTokenizer.from_pretrained(str(path), legacy=True, add_bos_token=True, add_eos_token=False)
    else:
        raise FileNotFoundError(f'{path} has no tokenizer.json or tokenizer.model')
    require_image_tokens(tokenizer, source=f'tokenizer in {path}')
    return tokenizer
