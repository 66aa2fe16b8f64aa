"""Read the trainable state a training run saved, and check that it belongs to a model config.

A checkpoint that does not fit (another LoRA rank or target list, another base model, a truncated
file) is an error naming the mismatch: a converter that loads leniently hands back the base model.
"""
from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Dict, Optional

import torch

from xtuner_ext.safe_load import mmengine_checkpoint_globals

DEEPSPEED_MODEL_STATES = 'mp_rank_00_model_states.pt'
_LORA_KEY = re.compile(r'^(?P<module>.+)\.lora_(?P<which>A|B)\.[^.]+\.weight$')


class CheckpointMismatchError(ValueError):
    """The checkpoint cannot be the trained state of the model the config describes."""


def _load(file: Path):
    try:
        with torch.serialization.safe_globals(mmengine_checkpoint_globals()):  # no arbitrary pickles
            return torch.load(file, map_location='cpu', weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile) as err:
        raise CheckpointMismatchError(f'{file} cannot be read ({type(err).__name__}: {str(err)[:200]}): the file is '
                                      'truncated or not a PyTorch checkpoint; use a complete iter_N.pth') from err
    except pickle.UnpicklingError as err:
        raise CheckpointMismatchError(f'{file} holds objects outside the safe allow-list ({str(err)[:200]}); '
                                      "export its weights with DeepSpeed's zero_to_fp32.py and convert that file"
                                      ) from err


def _deepspeed_states_file(folder: Path) -> Path:
    found = sorted(folder.rglob(DEEPSPEED_MODEL_STATES))
    if len(found) != 1:
        raise CheckpointMismatchError(f'{folder} is a folder but holds {len(found)} {DEEPSPEED_MODEL_STATES} files '
                                      '(expected one DeepSpeed checkpoint); pass the iter_N.pth file or the '
                                      'DeepSpeed checkpoint folder itself')
    return found[0]


def read_trained_state(path) -> Dict[str, torch.Tensor]:
    """The trainable tensors of an ``iter_N.pth`` (mmengine), a bare state dict, or a DeepSpeed folder."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f'checkpoint {path} does not exist')
    file = _deepspeed_states_file(path) if path.is_dir() else path
    checkpoint = _load(file)
    if not isinstance(checkpoint, dict):
        raise CheckpointMismatchError(f'{file} holds a {type(checkpoint).__name__}, not a state dict')
    for key in ('state_dict', 'module'):  # mmengine, DeepSpeed
        if isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
            break
    state = {k: v for k, v in checkpoint.items() if torch.is_tensor(v)}
    if not state:
        raise CheckpointMismatchError(f'{file} holds no tensors: not a training checkpoint')
    return state


def lora_modules(state: Dict[str, torch.Tensor]) -> Dict[str, int]:
    """``{adapted module name: rank}`` found in a state dict (rank = rows of ``lora_A``)."""
    found = {}
    for key, tensor in state.items():
        match = _LORA_KEY.match(key)
        if match and match['which'] == 'A':
            found[match['module']] = int(tensor.shape[0])
    return found


def check_lora_fits(state: Dict[str, torch.Tensor], lora: Optional[dict], part: str, prefix: str) -> None:
    """Compare the checkpoint's LoRA under ``prefix`` with the config's ``lora`` dict (rank, targets)."""
    found = {k: r for k, r in lora_modules(state).items() if k.startswith(prefix)}
    if not lora:
        if found:
            raise CheckpointMismatchError(f'the checkpoint has LoRA on {len(found)} {part} module(s) '
                                          f'(e.g. {sorted(found)[0]}) but the config has no {part} LoRA')
        return
    if not found:
        raise CheckpointMismatchError(f'the config adds {part} LoRA but the checkpoint has no {part} LoRA weights: '
                                      'it was trained with another config')
    ranks = sorted(set(found.values()))
    if ranks != [lora.get('r', 8)]:
        raise CheckpointMismatchError(f'{part} LoRA rank: checkpoint r={ranks} but the config says '
                                      f'r={lora.get("r", 8)}; convert with the config the run was trained with')
    targets = lora.get('target_modules') or []
    targets = [targets] if isinstance(targets, str) else list(targets)
    hits = {t: [n for n in found if n == t or n.endswith('.' + t)] for t in targets}
    unused = sorted(t for t, names in hits.items() if not names)
    extra = sorted({n.rsplit('.', 1)[-1] for n in found} - {n.rsplit('.', 1)[-1] for ns in hits.values() for n in ns})
    if unused or extra:
        raise CheckpointMismatchError(f'{part} LoRA targets: the config targets {unused} that the checkpoint does not '
                                      f'adapt, and the checkpoint adapts {extra} that the config does not target; '
                                      'convert with the config the run was trained with')
