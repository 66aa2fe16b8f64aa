"""Seeded tiny InternLM2 checkpoints in the official layout: the LLM part of the tiny InternVL2.

The tiny InternVL2 (``internvl2/tiny.py``) holds an official InternLM2 under ``language_model.`` and
its ``llm_config``; dropping the prefix gives an official InternLM2 folder (what an
``internlm2-chat-1_8b`` download holds, minus the remote-code files), with the same tokenizer.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Union

from safetensors import safe_open

from xtuner_ext.models.internvl2.checkpoint import LLM_PREFIX, save_checkpoint
from xtuner_ext.models.internvl2.tiny import make_tiny_model

TOKENIZER_FILES = ('tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json')


def internlm2_folder_from_internvl2(internvl2: Union[str, Path], out_dir: Union[str, Path]) -> Path:
    """Write the LLM of an official InternVL2 (InternLM2) folder as an official InternLM2 folder."""
    internvl2, out_dir = Path(internvl2), Path(out_dir)
    config = json.loads((internvl2 / 'config.json').read_text(encoding='utf-8'))['llm_config']
    with safe_open(str(internvl2 / 'model.safetensors'), framework='pt') as handle:
        tensors = {key[len(LLM_PREFIX):]: handle.get_tensor(key) for key in handle.keys()
                   if key.startswith(LLM_PREFIX)}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / 'config.json').write_text(json.dumps(config, indent=2, sort_keys=True) + '\n', encoding='utf-8')
    for name in TOKENIZER_FILES + ('generation_config.json',):
        if (internvl2 / name).is_file():
            shutil.copyfile(internvl2 / name, out_dir / name)
    save_checkpoint(tensors, out_dir)
    return out_dir


def make_tiny_internlm2(out_dir: Union[str, Path], seed: int = 0, overwrite: bool = False) -> Path:
    """A seeded random InternLM2 folder (official layout); same seed, same files."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f'{out_dir} already exists; pass overwrite=True to replace it')
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f'.{out_dir.name}.', dir=out_dir.parent) as tmp:
        internvl2 = make_tiny_model(Path(tmp) / 'internvl2', seed=seed)
        staged = internlm2_folder_from_internvl2(internvl2, Path(tmp) / 'internlm2')
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staged.rename(out_dir)
    return out_dir
