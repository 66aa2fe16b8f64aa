"""A trained XTuner LLaVA checkpoint -> the transformers ``llava-hf`` layout, loadable with no remote code.

``LlavaForConditionalGeneration`` with the native InternLM2 (a Llama-layout LLM), CLIP and the
projector, LoRA merged into both towers, plus a ``LlavaProcessor`` (CLIP image processor,
tokenizer with an ``<image>`` token, InternLM2-chat template). The LLM is rebuilt unquantized from
the config's folder, as XTuner's own merge does: the release is the full-precision base plus LoRA.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Union

import torch
from torch import nn

IMAGE_TOKEN = '<image>'
# InternLM2-chat format (XTuner's PROMPT_TEMPLATE.internlm2_chat); an image part renders as "<image>\n".
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['content'] is string %}{% set text = message['content'] %}"
    "{% else %}{% set text = namespace(value='') %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{% set text.value = text.value + '<image>\n' %}"
    "{% else %}{% set text.value = text.value + part['text'] %}{% endif %}"
    "{% endfor %}{% set text = text.value %}{% endif %}"
    "{% if message['role'] == 'system' %}{{ '<|im_start|>system\n' + text + '<|im_end|>\n' }}"
    "{% elif message['role'] == 'user' %}{{ '<|im_start|>user\n' + text + '<|im_end|>\n' }}"
    "{% else %}{{ '<|im_start|>assistant\n' + text + '<|im_end|>\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def llava_from_checkpoint(config: str, checkpoint: str):
    """The config's ``LLaVAModel`` with an unquantized LLM and ``checkpoint``'s trained weights (strict)."""
    from mmengine.config import Config
    from xtuner.model.utils import guess_load_checkpoint
    from xtuner.registry import BUILDER

    import xtuner_ext  # noqa: F401  (boot patches, registries)

    cfg = Config.fromfile(config)
    cfg.model.llm.quantization = None
    cfg.model.llm.torch_dtype = 'float32'
    cfg.model.visual_encoder.torch_dtype = 'float32'
    cfg.model.pretrained_pth = None
    cfg.model.use_activation_checkpointing = False
    model = BUILDER.build(cfg.model)
    state = guess_load_checkpoint(checkpoint)
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(f'{checkpoint} does not fit {config} (same LoRA ranks and freeze switches?): '
                         f'{len(missing)} missing {missing[:4]}, {len(unexpected)} unexpected {unexpected[:4]}')
    model.load_state_dict(state, strict=False)  # partial by design (frozen weights come from the folders); checked above
    return model.eval()


def _merged(module: nn.Module) -> nn.Module:
    return module.merge_and_unload() if hasattr(module, 'merge_and_unload') else module


def llava_hf_state_dict(llm: nn.Module, vision: nn.Module, projector: nn.Module) -> Dict[str, torch.Tensor]:
    """Tensors under ``LlavaForConditionalGeneration`` names (transformers 4.48 layout)."""
    linear = [m for m in projector.modules() if isinstance(m, nn.Linear)]
    if len(linear) != 2:
        raise ValueError(f'llava-hf holds a 2-layer MLP projector; this one has {len(linear)} linear layers '
                         '(projector_depth must be 2)')
    tensors = {f'language_model.{k}': v for k, v in llm.state_dict().items()}
    tensors.update({f'vision_tower.{k}': v for k, v in vision.state_dict().items()})
    for name, layer in zip(('linear_1', 'linear_2'), linear):
        tensors[f'multi_modal_projector.{name}.weight'] = layer.weight
        tensors[f'multi_modal_projector.{name}.bias'] = layer.bias
    return {k: v.detach().clone() for k, v in tensors.items()}


def export_llava_hf(model, tokenizer, image_processor, out_dir: Union[str, Path]) -> Path:
    """Write ``model`` (an ``xtuner.model.LLaVAModel``) as a llava-hf folder, LoRA merged."""
    from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    out_dir = Path(out_dir)
    llm, vision = _merged(model.llm), _merged(model.visual_encoder)
    tokenizer.add_tokens([IMAGE_TOKEN], special_tokens=True)
    llm.resize_token_embeddings(len(tokenizer), mean_resizing=False)  # the new row is never looked up: image features replace it
    config = LlavaConfig(vision_config=vision.config.to_dict(), text_config=llm.config.to_dict(),
                         image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
                         projector_hidden_act='gelu', vision_feature_layer=model.visual_select_layer,
                         vision_feature_select_strategy='default')  # 'default' drops CLS, as XTuner does
    hf_model = LlavaForConditionalGeneration(config)
    hf_model.load_state_dict(llava_hf_state_dict(llm, vision, model.projector), strict=True)
    hf_model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids('<|im_end|>')
    hf_model.save_pretrained(str(out_dir))
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE,
                               patch_size=vision.config.patch_size, vision_feature_select_strategy='default',
                               num_additional_image_tokens=1)  # CLIP's CLS (dropped by 'default')
    processor.save_pretrained(str(out_dir))
    name_tokenizer_class_for_transformers(out_dir)
    return out_dir


def name_tokenizer_class_for_transformers(folder: Union[str, Path]) -> None:
    """``InternLM2Tokenizer`` is remote code in the official release; name the transformers class that
    encodes identically (``LlamaTokenizer``, legacy sentencepiece) so ``AutoProcessor`` needs none.
    (Its decoding differs only in the spaces it puts around special tokens.)"""
    import json

    file = Path(folder) / 'tokenizer_config.json'
    config = json.loads(file.read_text(encoding='utf-8'))
    if config.get('tokenizer_class') != 'InternLM2Tokenizer':
        return
    config.update(tokenizer_class='LlamaTokenizer', legacy=True, add_prefix_space=False)
    config.pop('auto_map', None)
    file.write_text(json.dumps(config, indent=2, ensure_ascii=False) + '\n', encoding='utf-8')


def export_from_checkpoint(config: str, checkpoint: str, out_dir: Union[str, Path]) -> Path:
    """``xtuner-ext llava export``: config + ``iter_N.pth`` -> llava-hf folder."""
    from mmengine.config import Config
    from xtuner.registry import BUILDER

    cfg = Config.fromfile(config)
    model = llava_from_checkpoint(config, checkpoint)
    return export_llava_hf(model, BUILDER.build(cfg.tokenizer), BUILDER.build(cfg.image_processor), out_dir)
