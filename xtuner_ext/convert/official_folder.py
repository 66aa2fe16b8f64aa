"""Write a merged model as one official InternVL2 folder, placed atomically, keys accounted for.

The folder holds what the official ``model.chat()``, transformers (``trust_remote_code=True``) and
LMDeploy read: ``config.json`` (LoRA switches reset, the trained tiling and system message),
``generation_config.json`` (stopping at the template's separator), safetensors (sharded with an index when large), the base folder's
tokenizer files with a ``chat_template`` that renders the training prompt, and the base folder's
official remote-code ``.py`` files (copied, never generated; our own loader never needs them).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, List, Tuple

import torch
from safetensors import safe_open

from xtuner_ext.models.internvl2.checkpoint import weight_files
from xtuner_ext.models.internvl2.conversation import ChatTemplate

TOKENIZER_FILES = ('tokenizer.model', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json',
                   'added_tokens.json', 'vocab.json', 'merges.txt')
EXTRA_FILES = ('preprocessor_config.json',)  # read by some serving stacks; copied when present


class KeyAccountingError(ValueError):
    """The written weights are not exactly the base checkpoint's keys and shapes."""


# ---- config.json and chat template ----
def trained_config_fields(processor) -> dict:
    """Top-level config.json fields that make the official code tile and prompt as training did."""
    tiling = processor.tiling
    return dict(use_llm_lora=0, use_backbone_lora=0, dynamic_image_size=tiling.dynamic_image_size,
                min_dynamic_patch=tiling.min_dynamic_patch, max_dynamic_patch=tiling.max_dynamic_patch,
                use_thumbnail=tiling.use_thumbnail, system_message=processor.system_message)


def chat_template_jinja(template: ChatTemplate, system_message: str) -> str:
    """A Jinja chat template rendering ``ChatTemplate.render`` (the training and chat() prompt)."""
    def literal(text: str) -> str:
        return json.dumps(text, ensure_ascii=False)

    return (
        "{%- if messages and messages[0]['role'] == 'system' -%}"
        "{%- set system = messages[0]['content'] -%}{%- set turns = messages[1:] -%}"
        f"{{%- else -%}}{{%- set system = {literal(system_message)} -%}}{{%- set turns = messages -%}}{{%- endif -%}}"
        f"{{{{ {literal(template.system_template.split('{system_message}')[0])} + system + "
        f"{literal(template.system_template.split('{system_message}')[1])} + {literal(template.sep)} }}}}"
        "{%- for message in turns -%}"
        f"{{%- if message['role'] == 'user' -%}}{{{{ {literal(template.roles[0])} + message['content'] + "
        f"{literal(template.sep)} }}}}"
        f"{{%- elif message['role'] == 'assistant' -%}}{{{{ {literal(template.roles[1])} + message['content'] + "
        f"{literal(template.sep)} }}}}"
        "{%- endif -%}{%- endfor -%}"
        f"{{%- if add_generation_prompt -%}}{{{{ {literal(template.roles[1])} }}}}{{%- endif -%}}"
    )


def copy_tokenizer_files(base: Path, out: Path, chat_template: str) -> List[str]:
    """Copy the tokenizer files verbatim, then set ``chat_template`` in tokenizer_config.json."""
    copied = [name for name in TOKENIZER_FILES + EXTRA_FILES if (base / name).is_file()]
    for name in copied:
        shutil.copy2(base / name, out / name)
    config_file = out / 'tokenizer_config.json'
    config = json.loads(config_file.read_text(encoding='utf-8')) if config_file.is_file() else {}
    config['chat_template'] = chat_template
    config_file.write_text(json.dumps(config, indent=2, ensure_ascii=False) + '\n', encoding='utf-8')
    return sorted(set(copied) | {'tokenizer_config.json'})


def copy_remote_code(base: Path, out: Path) -> List[str]:
    """The official ``.py`` files of the base folder (configuration_*, modeling_*, conversation ...)."""
    names = sorted(p.name for p in base.glob('*.py') if p.is_file())
    for name in names:
        shutil.copy2(base / name, out / name)
    return names


def stop_at_template_separator(out: Path, tokenizer, separator: str) -> list:
    """Add the template's separator (``<|im_end|>``) to ``eos_token_id`` in generation_config.json, so
    ``generate()`` and serving stacks (LMDeploy reads it) stop where the official ``chat()`` stops."""
    file = out / 'generation_config.json'
    config = json.loads(file.read_text(encoding='utf-8'))
    eos = config.get('eos_token_id', tokenizer.eos_token_id)
    eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    config['eos_token_id'] = list(dict.fromkeys(eos + [tokenizer.convert_tokens_to_ids(separator)]))
    file.write_text(json.dumps(config, indent=2, sort_keys=True) + '\n', encoding='utf-8')
    return config['eos_token_id']


# ---- key accounting ----
def checkpoint_shapes(folder: Path) -> Dict[str, Tuple[int, ...]]:
    shapes = {}
    for file in weight_files(folder):
        with safe_open(str(file), framework='pt') as handle:
            for key in handle.keys():
                shapes[key] = tuple(handle.get_slice(key).get_shape())
    return shapes


def account_keys(base: Path, written: Path) -> int:
    """The written checkpoint must hold exactly the base checkpoint's keys and shapes; returns the count."""
    expected, got = checkpoint_shapes(base), checkpoint_shapes(written)
    missing, unexpected = sorted(expected.keys() - got.keys()), sorted(got.keys() - expected.keys())
    reshaped = sorted(k for k in expected.keys() & got.keys() if expected[k] != got[k])
    if missing or unexpected or reshaped:
        raise KeyAccountingError(f'the written weights do not match the base checkpoint {base}: {len(missing)} missing '
                                 f'{missing[:10]}, {len(unexpected)} unexpected {unexpected[:10]}, {len(reshaped)} '
                                 f'with other shapes {reshaped[:10]}')
    return len(got)


# ---- the folder ----
def write_official_folder(model, processor, base: Path, out: Path, dtype: torch.dtype,
                          max_shard_size: str = '5GB') -> dict:
    """Write ``model`` (merged, native, weights already in ``dtype``) into ``out`` in the official layout;
    returns what was written."""
    if model.dtype != dtype:
        raise ValueError(f'the model weights are {model.dtype}, expected {dtype}: cast them first (cast_weights)')
    model.config = model.config.with_updates(**trained_config_fields(processor))
    model.save_pretrained(out, max_shard_size=max_shard_size, progress=True)
    template = chat_template_jinja(processor.template, processor.system_message)
    return dict(tokenizer_files=copy_tokenizer_files(base, out, template), remote_code=copy_remote_code(base, out),
                eos_token_id=stop_at_template_separator(out, processor.tokenizer, processor.stop_token),
                keys=account_keys(base, out), shards=len(weight_files(out)))


def staging_folder(save_dir: Path) -> Path:
    """An empty temporary folder beside ``save_dir`` (same file system, so the final rename is atomic)."""
    save_dir.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f'.{save_dir.name}.tmp-', dir=save_dir.parent))


def place(staged: Path, save_dir: Path, overwrite: bool) -> None:
    """Rename the finished folder into place; an existing ``save_dir`` is replaced only with ``overwrite``."""
    umask = os.umask(0)
    os.umask(umask)
    staged.chmod(0o777 & ~umask)  # mkdtemp's 0700 (and safetensors' 0600) would hide them from other users
    for file in staged.iterdir():
        file.chmod(0o666 & ~umask)
    if not save_dir.exists():
        os.replace(staged, save_dir)
        return
    if not overwrite:
        raise FileExistsError(f'{save_dir} already exists; pass --overwrite to replace it')
    old = Path(tempfile.mkdtemp(prefix=f'.{save_dir.name}.old-', dir=save_dir.parent))
    os.replace(save_dir, old / save_dir.name)
    os.replace(staged, save_dir)
    shutil.rmtree(old)
