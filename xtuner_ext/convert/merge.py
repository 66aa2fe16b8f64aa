"""The trained model in full precision, with its LoRA folded into the base weights.

QLoRA trains adapters on 4-bit base weights, but the shipped model should carry the original
full-precision weights plus the adapter delta. So the model is rebuilt from the config without
quantization (same LoRA, same freeze switches), the trainable state is loaded strictly, and peft
merges each adapter (``merge_and_unload``).
"""
from __future__ import annotations

import copy
from typing import Dict, Optional

import torch
from torch import nn

from .trained_state import CheckpointMismatchError, check_lora_fits

LLM_PREFIX = 'model.language_model.'
VIT_PREFIX = 'model.vision_model.'


def model_settings(model_cfg: dict, base_model: Optional[str] = None, quantized: bool = False) -> dict:
    """The config's model dict for conversion: ``quantized=False`` drops 4-bit and computes in fp32."""
    cfg = copy.deepcopy(dict(model_cfg))
    if base_model is not None:
        cfg['model_path'] = str(base_model)
    cfg.update(gradient_checkpointing=False, pretrained_pth=None)
    if not quantized:
        cfg.update(quantization_llm=None, quantization_vit=None, torch_dtype='float32')
    return cfg


def build_qlora(settings: dict):
    """An ``InternVL2QLoRA`` (or any registered model type) from a config's model dict."""
    import xtuner_ext  # noqa: F401  (registers the types configs name)
    from mmengine.registry import MODELS

    return MODELS.build(settings)


def check_fits(state: Dict[str, torch.Tensor], model_cfg: dict) -> None:
    """The checkpoint's LoRA (rank, targets, which towers) must be the config's: checked before any
    model is built, so a wrong config fails in seconds."""
    check_lora_fits(state, model_cfg.get('llm_lora'), 'LLM', LLM_PREFIX)
    check_lora_fits(state, model_cfg.get('visual_encoder_lora'), 'vision', VIT_PREFIX)


def load_trained(model, state: Dict[str, torch.Tensor], settings: dict) -> None:
    """Check the checkpoint's LoRA against the config, then load strictly (the model's own check
    raises on any missing, unexpected or reshaped trainable)."""
    check_fits(state, settings)
    try:
        model.load_state_dict(state)
    except ValueError as err:
        raise CheckpointMismatchError(f"the checkpoint was not trained on the base model {settings['model_path']} "
                                      f'(pass the training base with --base-model): {err}') from err


def fold_lora(module: nn.Module) -> nn.Module:
    """Merge every LoRA adapter under ``module`` into its base layer and drop the adapter."""
    from peft import PeftModel
    from peft.tuners.tuners_utils import BaseTunerLayer

    if isinstance(module, PeftModel):
        return module.merge_and_unload(progressbar=True, safe_merge=True)
    for name, layer in list(module.named_modules()):
        if isinstance(layer, BaseTunerLayer):  # adapters injected without a PeftModel (the ViT)
            layer.merge(safe_merge=True)
            parent_name, _, child = name.rpartition('.')
            setattr(module.get_submodule(parent_name) if parent_name else module, child, layer.get_base_layer())
    return module


def merged_chat_model(qlora):
    """The ``InternVLChatModel`` of a loaded full-precision ``InternVL2QLoRA`` with its LoRA merged."""
    chat_model = qlora.model
    chat_model.language_model = fold_lora(chat_model.language_model)
    chat_model.vision_model = fold_lora(chat_model.vision_model)
    for parameter in chat_model.parameters():
        parameter.requires_grad_(False)
    return chat_model.eval()


def cast_weights(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Cast parameters only: ``.to(dtype)`` would also round the fp32 RoPE ``inv_freq`` buffers, which
    a model loaded from the folder recomputes in fp32, and the two would then answer differently."""
    for parameter in model.parameters():
        parameter.data = parameter.data.to(dtype)
    return model
