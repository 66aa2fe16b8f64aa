"""The official <-> native key map, in one place, and strict safetensors reading/writing.

Official names are what ``model.safetensors`` of an InternVL2 release holds; native names are what
``InternVLChatModel.state_dict()`` returns. ``vision_model.*`` and ``mlp1.*`` are identical in both.
``language_model.*`` is identical too, except for InternLM2, which runs as ``LlamaForCausalLM``:
its keys are renamed by ``INTERNLM2_TO_LLAMA`` and its fused ``wqkv`` is split by
:func:`split_wqkv` / re-fused by :func:`fuse_wqkv`. Any key outside the map is an error.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Dict, Iterable, Iterator, Mapping, Optional, Tuple, Union

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from .configuration import InternVLChatConfig

SAFE_WEIGHTS_NAME = 'model.safetensors'
SAFE_WEIGHTS_INDEX_NAME = 'model.safetensors.index.json'
LLM_PREFIX = 'language_model.'

# Official InternLM2 name -> LlamaForCausalLM name; ``{}`` is the layer index.
INTERNLM2_TO_LLAMA = {
    'model.tok_embeddings.weight': 'model.embed_tokens.weight',
    'model.norm.weight': 'model.norm.weight',
    'output.weight': 'lm_head.weight',
    'model.layers.{}.attention.wo.weight': 'model.layers.{}.self_attn.o_proj.weight',
    'model.layers.{}.attention.wo.bias': 'model.layers.{}.self_attn.o_proj.bias',
    'model.layers.{}.feed_forward.w1.weight': 'model.layers.{}.mlp.gate_proj.weight',
    'model.layers.{}.feed_forward.w3.weight': 'model.layers.{}.mlp.up_proj.weight',
    'model.layers.{}.feed_forward.w2.weight': 'model.layers.{}.mlp.down_proj.weight',
    'model.layers.{}.attention_norm.weight': 'model.layers.{}.input_layernorm.weight',
    'model.layers.{}.ffn_norm.weight': 'model.layers.{}.post_attention_layernorm.weight',
}
LLAMA_TO_INTERNLM2 = {native: official for official, native in INTERNLM2_TO_LLAMA.items()}
# The fused projection and its three native parts.
INTERNLM2_FUSED_QKV = 'model.layers.{}.attention.wqkv.{}'
LLAMA_QKV_PARTS = ('model.layers.{}.self_attn.q_proj.{}', 'model.layers.{}.self_attn.k_proj.{}',
                   'model.layers.{}.self_attn.v_proj.{}')

_LAYER = re.compile(r'\.(\d+)\.')
_FUSED = re.compile(r'^model\.layers\.(\d+)\.attention\.wqkv\.(weight|bias)$')
_PART = re.compile(r'^model\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)$')


def _template(key: str) -> Tuple[str, Optional[str]]:
    """``model.layers.3.x`` -> (``model.layers.{}.x``, ``'3'``)."""
    match = _LAYER.search(key)
    if match is None:
        return key, None
    return key[:match.start()] + '.{}.' + key[match.end():], match.group(1)


def _rename(key: str, table: Mapping[str, str]) -> Optional[str]:
    template, layer = _template(key)
    target = table.get(template)
    if target is None:
        return None
    return target.format(layer) if layer is not None else target


# ---- wqkv surgery ----
def split_wqkv(wqkv: torch.Tensor, num_heads: int, num_kv_heads: int) -> Tuple[torch.Tensor, ...]:
    """InternLM2 fused ``wqkv`` (weight ``[out, in]`` or bias ``[out]``) -> contiguous q, k, v.

    Rows are grouped per KV head: ``groups`` query heads, then that head's key, then its value
    (``(h gs d)`` with ``gs = groups + 2``). Query head ``h * groups + g`` uses KV head ``h``, which
    is the order transformers' ``repeat_kv`` assumes.
    """
    groups = num_heads // num_kv_heads
    head_dim = wqkv.shape[0] // (num_kv_heads * (groups + 2))
    rest = wqkv.shape[1:]
    grouped = wqkv.reshape(num_kv_heads, groups + 2, head_dim, *rest)
    q = grouped[:, :groups].reshape(num_heads * head_dim, *rest).clone()
    k = grouped[:, groups].reshape(num_kv_heads * head_dim, *rest).clone()
    v = grouped[:, groups + 1].reshape(num_kv_heads * head_dim, *rest).clone()
    return q, k, v


def fuse_wqkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_heads: int, num_kv_heads: int) -> torch.Tensor:
    """Inverse of :func:`split_wqkv`."""
    groups = num_heads // num_kv_heads
    head_dim = q.shape[0] // num_heads
    rest = q.shape[1:]
    parts = (q.reshape(num_kv_heads, groups, head_dim, *rest), k.reshape(num_kv_heads, 1, head_dim, *rest),
             v.reshape(num_kv_heads, 1, head_dim, *rest))
    return torch.cat(parts, dim=1).reshape(-1, *rest).contiguous()


def _heads(config: InternVLChatConfig) -> Tuple[int, int]:
    heads = config.llm_config['num_attention_heads']
    return heads, config.llm_config.get('num_key_value_heads') or heads


# ---- official -> native ----
def native_state_dict_from_official(tensors: Iterable[Tuple[str, torch.Tensor]],
                                    config: InternVLChatConfig) -> Dict[str, torch.Tensor]:
    """Rename (and for InternLM2 split) official tensors to native names.

    ``tensors`` may be a lazy iterator, so a full-size checkpoint is converted one tensor at a time.
    Raises ``ValueError`` naming every key the map does not know.
    """
    internlm2 = config.llm_architecture == 'InternLM2ForCausalLM'
    heads, kv_heads = _heads(config)
    native, unknown = {}, []
    for key, tensor in tensors:
        if key.startswith(('vision_model.', 'mlp1.')):
            native[key] = tensor
            continue
        if not key.startswith(LLM_PREFIX):
            unknown.append(key)
            continue
        llm_key = key[len(LLM_PREFIX):]
        if not internlm2:
            native[key] = tensor
        elif (fused := _FUSED.match(llm_key)) is not None:
            layer, kind = fused.groups()
            for part, value in zip(LLAMA_QKV_PARTS, split_wqkv(tensor, heads, kv_heads)):
                native[LLM_PREFIX + part.format(layer, kind)] = value
        elif (renamed := _rename(llm_key, INTERNLM2_TO_LLAMA)) is not None:
            native[LLM_PREFIX + renamed] = tensor
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f'{len(unknown)} checkpoint key(s) are not part of the InternVL2 '
                         f'{config.llm_architecture} layout: {_preview(unknown)}')
    return native


# ---- native -> official ----
def official_state_dict(state_dict: Mapping[str, torch.Tensor],
                        config: InternVLChatConfig) -> Dict[str, torch.Tensor]:
    """Native (``model.state_dict()``) tensors under official names, in the official key order."""
    if config.llm_architecture != 'InternLM2ForCausalLM':
        return {key: value.contiguous() for key, value in state_dict.items()}
    heads, kv_heads = _heads(config)
    official, unknown = {}, []
    for key, value in state_dict.items():
        llm_key = key[len(LLM_PREFIX):] if key.startswith(LLM_PREFIX) else None
        if llm_key is None:
            official[key] = value.contiguous()
        elif (part := _PART.match(llm_key)) is not None:
            layer, which, kind = part.groups()
            if which == 'q':  # emit the fused tensor where q sits, i.e. at wqkv's official position
                q, k, v = (state_dict[LLM_PREFIX + p.format(layer, kind)] for p in LLAMA_QKV_PARTS)
                official[LLM_PREFIX + INTERNLM2_FUSED_QKV.format(layer, kind)] = fuse_wqkv(q, k, v, heads, kv_heads)
        elif (renamed := _rename(llm_key, LLAMA_TO_INTERNLM2)) is not None:
            official[LLM_PREFIX + renamed] = value.contiguous()
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f'{len(unknown)} native key(s) have no official InternLM2 name: {_preview(unknown)}. '
                         'Merge or drop adapter weights (e.g. peft merge_and_unload) before exporting.')
    return official


# ---- strictness ----
def _preview(keys, limit: int = 8) -> str:
    keys = sorted(keys)
    more = f' ... (+{len(keys) - limit} more)' if len(keys) > limit else ''
    return ', '.join(keys[:limit]) + more


def check_state_dict(expected: Mapping[str, torch.Size], got: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise ``ValueError`` naming missing, unexpected and wrongly shaped keys."""
    missing = expected.keys() - got.keys()
    unexpected = got.keys() - expected.keys()
    wrong = [f'{k}: checkpoint {tuple(got[k].shape)} vs model {tuple(expected[k])}'
             for k in sorted(expected.keys() & got.keys()) if tuple(got[k].shape) != tuple(expected[k])]
    problems = []
    if missing:
        problems.append(f'missing {len(missing)} key(s): {_preview(missing)}')
    if unexpected:
        problems.append(f'unexpected {len(unexpected)} key(s): {_preview(unexpected)}')
    if wrong:
        problems.append(f'{len(wrong)} shape mismatch(es): ' + '; '.join(wrong[:8]))
    if problems:
        raise ValueError(f'weights in {source} do not match config.json: ' + ' | '.join(problems))


# ---- files ----
def weight_files(path: Union[str, Path]) -> list:
    """The safetensors files of a checkpoint folder (single file or sharded with an index)."""
    path = Path(path)
    index = path / SAFE_WEIGHTS_INDEX_NAME
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding='utf-8')).get('weight_map')
        except json.JSONDecodeError as err:
            raise ValueError(f'{index} is truncated or corrupt (not valid JSON: {err}): download or copy the '
                             'checkpoint folder again') from err
        if not weight_map:
            raise ValueError(f'{index} has no weight_map')
        files = [path / name for name in sorted(set(weight_map.values()))]
        absent = [f.name for f in files if not f.is_file()]
        if absent:
            raise FileNotFoundError(f'{index} lists shard(s) missing from {path}: {absent}')
        return files
    if (path / SAFE_WEIGHTS_NAME).is_file():
        return [path / SAFE_WEIGHTS_NAME]
    hint = ' (only PyTorch .bin weights found: convert them to safetensors first)' \
        if any(path.glob('pytorch_model*.bin')) else ''
    raise FileNotFoundError(f'{path} has no {SAFE_WEIGHTS_NAME} or {SAFE_WEIGHTS_INDEX_NAME}{hint}')


def unreadable_weights_error(file: Path, err: Exception) -> ValueError:
    """The error for a safetensors file its reader refuses: name the file, what is wrong and the remedy."""
    size = file.stat().st_size if file.is_file() else 0
    return ValueError(f'{file} is truncated or corrupt ({size} bytes; safetensors: {err}), e.g. an interrupted '
                      'download or copy: download or copy the checkpoint folder again')


def iter_checkpoint_tensors(path: Union[str, Path], dtype: Optional[torch.dtype] = None,
                            device: Union[str, torch.device] = 'cpu') -> Iterator[Tuple[str, torch.Tensor]]:
    """Yield ``(official_name, tensor)`` one at a time from all shards, cast to ``dtype``."""
    for file in weight_files(path):
        try:
            handle = safe_open(str(file), framework='pt', device=str(device))
        except SafetensorError as err:
            raise unreadable_weights_error(file, err) from err
        with handle:
            for key in handle.keys():
                try:
                    tensor = handle.get_tensor(key)
                except SafetensorError as err:
                    raise unreadable_weights_error(file, err) from err
                yield key, (tensor if dtype is None or not tensor.is_floating_point() else tensor.to(dtype))


def save_checkpoint(tensors: Mapping[str, torch.Tensor], path: Union[str, Path],
                    max_shard_size: Union[int, str] = '5GB', progress: bool = False) -> None:
    """Write tensors the way transformers' ``save_pretrained`` does (same file names, index layout);
    ``progress``: a bar per written shard on stderr (a full-size model writes for minutes)."""
    from huggingface_hub import split_torch_state_dict_into_shards

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    split = split_torch_state_dict_into_shards(dict(tensors), filename_pattern='model{suffix}.safetensors',
                                               max_shard_size=max_shard_size)
    for stale in list(path.glob('model*.safetensors')) + [path / SAFE_WEIGHTS_INDEX_NAME]:
        stale.unlink(missing_ok=True)
    shards = tqdm(split.filename_to_tensors.items(), desc='writing shards', unit='shard', disable=not progress,
                  file=sys.stderr)
    for filename, keys in shards:
        save_file({k: tensors[k].detach().cpu().contiguous() for k in keys}, str(path / filename),
                  metadata={'format': 'pt'})
    if split.is_sharded:
        index = {'metadata': split.metadata, 'weight_map': split.tensor_to_filename}
        (path / SAFE_WEIGHTS_INDEX_NAME).write_text(json.dumps(index, indent=2, sort_keys=True) + '\n',
                                                    encoding='utf-8')
