"""An official InternLM2 folder <-> ``LlamaForCausalLM`` tensors, with the InternVL2 key map.

An official InternLM2 checkpoint is the ``language_model.`` part of InternVL2's layout without the
prefix (``model.tok_embeddings``, ``model.layers.N.attention.wqkv``, ``output.weight``, ...), so the
renaming table and the ``wqkv`` surgery are the ones in ``internvl2/checkpoint.py``; only the loop
over keys lives here. Any key outside the map is an error.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Tuple, Union

import torch

from xtuner_ext.models.internvl2.checkpoint import (INTERNLM2_FUSED_QKV, INTERNLM2_TO_LLAMA, LLAMA_QKV_PARTS,
                                                    LLAMA_TO_INTERNLM2, _FUSED, _PART, _preview, _rename, fuse_wqkv,
                                                    split_wqkv)

ARCHITECTURE = 'InternLM2ForCausalLM'


def read_internlm2_config(path: Union[str, Path]) -> Dict[str, Any]:
    """``config.json`` of an official InternLM2 folder; ``ValueError`` when it is another model."""
    file = Path(path) / 'config.json'
    if not file.is_file():
        raise FileNotFoundError(f'{path} has no config.json: expected an official InternLM2 folder '
                                '(e.g. internlm2-chat-1_8b)')
    config = json.loads(file.read_text(encoding='utf-8'))
    archs = config.get('architectures') or [None]
    if archs[0] != ARCHITECTURE:
        raise ValueError(f'{file}: architectures[0] is {archs[0]!r}, expected {ARCHITECTURE!r}. This loader reads '
                         'official InternLM2 folders; load Llama/Qwen2 folders with transformers directly.')
    return config


def heads(config: Mapping[str, Any]) -> Tuple[int, int]:
    num_heads = config['num_attention_heads']
    return num_heads, config.get('num_key_value_heads') or num_heads


def llama_state_dict(tensors: Iterable[Tuple[str, torch.Tensor]], config: Mapping[str, Any]) -> Dict[str, torch.Tensor]:
    """Official InternLM2 tensors under ``LlamaForCausalLM`` names (``wqkv`` split into q, k, v)."""
    num_heads, kv_heads = heads(config)
    native, unknown = {}, []
    for key, tensor in tensors:
        if (fused := _FUSED.match(key)) is not None:
            layer, kind = fused.groups()
            for part, value in zip(LLAMA_QKV_PARTS, split_wqkv(tensor, num_heads, kv_heads)):
                native[part.format(layer, kind)] = value
        elif (renamed := _rename(key, INTERNLM2_TO_LLAMA)) is not None:
            native[renamed] = tensor
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f'{len(unknown)} checkpoint key(s) are not part of the InternLM2 layout: {_preview(unknown)}')
    return native


def internlm2_state_dict(state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> Dict[str, torch.Tensor]:
    """``LlamaForCausalLM`` tensors under official InternLM2 names (q, k, v fused into ``wqkv``)."""
    num_heads, kv_heads = heads(config)
    official, unknown = {}, []
    for key, value in state_dict.items():
        if (part := _PART.match(key)) is not None:
            layer, which, kind = part.groups()
            if which == 'q':  # the fused tensor goes where q sits
                q, k, v = (state_dict[p.format(layer, kind)] for p in LLAMA_QKV_PARTS)
                official[INTERNLM2_FUSED_QKV.format(layer, kind)] = fuse_wqkv(q, k, v, num_heads, kv_heads)
        elif (renamed := _rename(key, LLAMA_TO_INTERNLM2)) is not None:
            official[renamed] = value.contiguous()
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f'{len(unknown)} key(s) have no official InternLM2 name: {_preview(unknown)}. Merge the '
                         'LoRA adapter first (merge_internlm2_adapter / peft merge_and_unload).')
    return official
