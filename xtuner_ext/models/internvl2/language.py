"""The language model: a plain transformers ``*ForCausalLM`` built from the official ``llm_config``.

InternLM2 is run as ``LlamaForCausalLM``: the two compute the same function (RMSNorm, SwiGLU, GQA,
rotate-half RoPE with the same dynamic-NTK rule); only the parameter names differ and InternLM2
fuses q/k/v into one GQA-grouped ``wqkv`` (see ``checkpoint.py``). Qwen2, Llama and Phi-3 InternVL2
checkpoints already use transformers' own names. Using transformers classes gives SDPA attention,
KV-cache generation, gradient checkpointing, peft and bitsandbytes support unchanged.
"""
from __future__ import annotations

from typing import Any, Dict

import torch
from torch import nn
from transformers import (LlamaConfig, LlamaForCausalLM, Phi3Config, Phi3ForCausalLM, PretrainedConfig,
                          PreTrainedModel, Qwen2Config, Qwen2ForCausalLM)

NATIVE_CLASSES = {
    'InternLM2ForCausalLM': (LlamaConfig, LlamaForCausalLM),
    'LlamaForCausalLM': (LlamaConfig, LlamaForCausalLM),
    'Qwen2ForCausalLM': (Qwen2Config, Qwen2ForCausalLM),
    'Phi3ForCausalLM': (Phi3Config, Phi3ForCausalLM),
}
# Bookkeeping keys of a saved config that must not reach a native config's constructor.
_NOT_ARCHITECTURE = ('auto_map', 'architectures', 'model_type', 'transformers_version', '_name_or_path',
                     'attn_implementation', '_attn_implementation_autoset', 'torch_dtype', '_commit_hash')


def _internlm2_rope_scaling(llm_config: Dict[str, Any]):
    scaling = llm_config.get('rope_scaling')
    if scaling is None:
        return None
    kind = scaling.get('type', scaling.get('rope_type'))
    if kind not in ('dynamic', 'linear'):
        raise ValueError(f"llm_config.rope_scaling type {kind!r} is not supported for InternLM2 (use 'dynamic' or "
                         "'linear')")
    return {'rope_type': kind, 'factor': float(scaling['factor'])}


def internlm2_as_llama_config(llm_config: Dict[str, Any], attn_implementation: str = 'sdpa') -> LlamaConfig:
    """InternLM2 hyper-parameters as a ``LlamaConfig`` (defaults are InternLM2Config's)."""
    c = llm_config
    heads = c['num_attention_heads']
    return LlamaConfig(
        vocab_size=c['vocab_size'],
        hidden_size=c['hidden_size'],
        intermediate_size=c.get('intermediate_size', 11008),
        num_hidden_layers=c['num_hidden_layers'],
        num_attention_heads=heads,
        num_key_value_heads=c.get('num_key_value_heads') or heads,
        hidden_act=c.get('hidden_act', 'silu'),
        max_position_embeddings=c.get('max_position_embeddings', 2048),
        rms_norm_eps=c.get('rms_norm_eps', 1e-6),
        rope_theta=c.get('rope_theta', 10000),
        rope_scaling=_internlm2_rope_scaling(c),
        attention_bias=c.get('bias', True),  # InternLM2's ``bias`` covers wqkv and wo, never the MLP
        mlp_bias=False,
        tie_word_embeddings=c.get('tie_word_embeddings', False),
        bos_token_id=c.get('bos_token_id', 1),
        eos_token_id=c.get('eos_token_id', 2),
        pad_token_id=c.get('pad_token_id', 0),
        initializer_range=c.get('initializer_range', 0.02),
        use_cache=c.get('use_cache', True),
        attn_implementation=attn_implementation,
    )


def native_llm_config(architecture: str, llm_config: Dict[str, Any],
                      attn_implementation: str = 'sdpa') -> PretrainedConfig:
    if architecture == 'InternLM2ForCausalLM':
        return internlm2_as_llama_config(llm_config, attn_implementation)
    config_cls, _ = NATIVE_CLASSES[architecture]
    kwargs = {k: v for k, v in llm_config.items() if k not in _NOT_ARCHITECTURE}
    return config_cls(**kwargs, attn_implementation=attn_implementation)


def build_language_model(architecture: str, config: PretrainedConfig) -> PreTrainedModel:
    _, model_cls = NATIVE_CLASSES[architecture]
    return model_cls(config)


def materialize_rotary_buffers(model: nn.Module, device: torch.device) -> None:
    """Recompute RoPE ``inv_freq`` buffers left on the meta device by a meta-device build.

    They are non-persistent (never in a checkpoint), so loading weights cannot fill them.
    """
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            has_meta = any(b.is_meta for b in child.buffers(recurse=False))
            if has_meta and type(child).__name__.endswith('RotaryEmbedding') and hasattr(child, 'config'):
                setattr(parent, name, type(child)(config=child.config, device=device))
    left = [name for name, buffer in model.named_buffers() if buffer.is_meta]
    if left:
        raise RuntimeError(f'buffers still on the meta device after loading: {left[:8]}')
    keep_rope_tables_with_the_model(model)


def keep_rope_tables_with_the_model(model: nn.Module) -> None:
    """Make ``original_inv_freq`` a buffer, so ``model.to(device)`` moves it.

    transformers 4.48 keeps it as a plain attribute; Phi-3's long-RoPE (InternVL2-4B) swaps it back in
    as ``inv_freq`` at every forward, so a model built on the CPU and moved to a GPU fails there with
    "Expected all tensors to be on the same device".
    """
    for module in model.modules():
        table = module.__dict__.get('original_inv_freq')
        if type(module).__name__.endswith('RotaryEmbedding') and torch.is_tensor(table):
            del module.original_inv_freq
            module.register_buffer('original_inv_freq', table, persistent=False)
