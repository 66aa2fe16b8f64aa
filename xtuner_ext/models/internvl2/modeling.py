"""Native InternVL2: InternViT -> pixel shuffle -> ``mlp1`` -> a transformers causal LM.

Same attribute names (``vision_model``, ``mlp1``, ``language_model``, ``img_context_token_id`` ...)
and call signatures as the official remote-code ``InternVLChatModel``; reads and writes the
official folder layout without executing anything from it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
import transformers
from torch import nn
from transformers.modeling_outputs import CausalLMOutputWithPast

from . import checkpoint as ckpt
from .configuration import InternVLChatConfig, dtype_from_name, dtype_name
from .conversation import IMG_END_TOKEN, IMG_START_TOKEN, IMG_CONTEXT_TOKEN, get_template, with_image_placeholder
from .language import build_language_model, materialize_rotary_buffers, native_llm_config
from .projector import build_mlp1, pixel_shuffle, vit_tokens_to_grid
from .processing import InternVL2Processor
from .vision import InternVisionModel

GENERATION_CONFIG_NAME = 'generation_config.json'


class InternVLChatModel(nn.Module):
    """InternVL2 chat model with the official names, signatures and checkpoint layout."""

    main_input_name = 'pixel_values'

    def __init__(self, config: InternVLChatConfig, attn_implementation: str = 'sdpa'):
        super().__init__()
        self.config = config
        self.vision_model = InternVisionModel(config.vision)
        llm_config = native_llm_config(config.llm_architecture, config.llm_config, attn_implementation)
        self.language_model = build_language_model(config.llm_architecture, llm_config)
        self.mlp1 = build_mlp1(config.vision.hidden_size, config.llm_hidden_size, config.downsample_ratio)

        self.patch_size = config.vision.patch_size
        self.select_layer = config.select_layer
        self.template = config.template
        self.num_image_token = config.num_image_token
        self.downsample_ratio = config.downsample_ratio
        self.ps_version = config.ps_version
        self.llm_arch_name = config.llm_architecture
        self.conv_template = get_template(config.template)
        self.system_message = config.system_message or self.conv_template.system_message
        self.img_context_token_id: Optional[int] = None
        # generation_config.json as read, written back verbatim; None writes transformers' default.
        self._generation_config_text: Optional[str] = None

    # ---- properties ----
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: Optional[dict] = None) -> None:
        """Checkpoint every ViT and LLM layer (non-reentrant unless told otherwise)."""
        kwargs = {'use_reentrant': False} if gradient_checkpointing_kwargs is None else gradient_checkpointing_kwargs
        self.vision_model.gradient_checkpointing_enable(kwargs)
        self.language_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)

    def gradient_checkpointing_disable(self) -> None:
        self.vision_model.gradient_checkpointing_disable()
        self.language_model.gradient_checkpointing_disable()

    def enable_input_require_grads(self) -> None:
        """Make both towers' input embeddings require grad, so checkpointed layers behind frozen
        embeddings (LoRA / QLoRA) still get gradients."""
        def hook(module, inputs, output):
            output.requires_grad_(True)

        self.language_model.enable_input_require_grads()
        self._vision_input_hook = self.vision_model.get_input_embeddings().register_forward_hook(hook)

    # ---- vision path ----
    def pixel_shuffle(self, x: torch.Tensor, scale_factor: float = 0.5) -> torch.Tensor:
        return pixel_shuffle(x, scale_factor, self.ps_version)

    def extract_feature(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Tiles ``[N, 3, H, W]`` -> LLM-space image embeddings ``[N, num_image_token, llm_hidden]``."""
        return self.mlp1(self.vision_tokens(pixel_values))

    def vision_tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The projector's input: ViT features of the selected layer, pixel-shuffled, per tile.
        Separate from ``mlp1`` so training can run a frozen ViT without keeping its activations."""
        out = self.vision_model(pixel_values, output_hidden_states=self.select_layer != -1)
        vit_embeds = out.last_hidden_state if self.select_layer == -1 else out.hidden_states[self.select_layer]
        grid = self.pixel_shuffle(vit_tokens_to_grid(vit_embeds), scale_factor=self.downsample_ratio)
        return grid.reshape(grid.shape[0], -1, grid.shape[-1])

    def _require_context_token_id(self) -> int:
        if self.img_context_token_id is None:
            raise ValueError('img_context_token_id is not set: assign model.img_context_token_id = '
                             "tokenizer.convert_tokens_to_ids('<IMG_CONTEXT>') (chat() does this for you)")
        return self.img_context_token_id

    def _embed_with_images(self, input_ids: torch.Tensor, vit_embeds: Optional[torch.Tensor]) -> torch.Tensor:
        """Token embeddings with each ``<IMG_CONTEXT>`` position replaced by the next image feature."""
        embeds = self.language_model.get_input_embeddings()(input_ids)
        if vit_embeds is None:
            if self.img_context_token_id is not None and bool((input_ids == self.img_context_token_id).any()):
                raise ValueError('input_ids hold <IMG_CONTEXT> tokens but no pixel_values were given: the images '
                                 'would be replaced by the placeholder embedding')
            return embeds
        mask = input_ids == self._require_context_token_id()
        features = vit_embeds.reshape(-1, embeds.shape[-1])
        num_tokens = int(mask.sum())
        if num_tokens != features.shape[0]:
            raise ValueError(f'image features and image tokens do not match: {num_tokens} <IMG_CONTEXT> tokens in '
                             f'input_ids but {vit_embeds.shape[0]} tiles x {self.num_image_token} = '
                             f'{features.shape[0]} features; build prompts with build_chat_prompt() and do not '
                             'truncate through the image block')
        return embeds.masked_scatter(mask.unsqueeze(-1), features.to(embeds.dtype))

    # ---- training / scoring ----
    def forward(self, pixel_values: Optional[torch.Tensor], input_ids: torch.LongTensor,
                attention_mask: Optional[torch.Tensor] = None, position_ids: Optional[torch.LongTensor] = None,
                image_flags: Optional[torch.LongTensor] = None, past_key_values=None,
                labels: Optional[torch.LongTensor] = None, use_cache: Optional[bool] = None,
                output_attentions: Optional[bool] = None, output_hidden_states: Optional[bool] = None,
                return_dict: Optional[bool] = None, **kwargs) -> CausalLMOutputWithPast:
        """Official forward: tiles whose ``image_flags`` is 0 (text-only padding) are run but dropped."""
        vit_embeds = None
        if pixel_values is not None:
            vit_embeds = self.extract_feature(pixel_values)
            if image_flags is not None:
                vit_embeds = vit_embeds[image_flags.reshape(-1) == 1]
        inputs_embeds = self._embed_with_images(input_ids, vit_embeds)
        outputs = self.language_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                      position_ids=position_ids, past_key_values=past_key_values,
                                      use_cache=use_cache, output_attentions=output_attentions,
                                      output_hidden_states=output_hidden_states, return_dict=True, **kwargs)
        loss = None
        if labels is not None:
            logits = outputs.logits[..., :-1, :].float()
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[..., 1:].reshape(-1).to(logits.device),
                                   ignore_index=-100)
        result = CausalLMOutputWithPast(loss=loss, logits=outputs.logits, past_key_values=outputs.past_key_values,
                                        hidden_states=outputs.hidden_states, attentions=outputs.attentions)
        return result if return_dict is not False else result.to_tuple()

    # ---- generation ----
    @torch.no_grad()
    def generate(self, pixel_values: Optional[torch.Tensor] = None, input_ids: Optional[torch.LongTensor] = None,
                 attention_mask: Optional[torch.Tensor] = None, visual_features: Optional[torch.Tensor] = None,
                 generation_config=None, output_hidden_states: Optional[bool] = None, **generate_kwargs):
        """Generate from ``inputs_embeds``; like the official, returns only the new tokens."""
        vit_embeds = visual_features
        if vit_embeds is None and pixel_values is not None:
            vit_embeds = self.extract_feature(pixel_values)
        inputs_embeds = self._embed_with_images(input_ids, vit_embeds)
        return self.language_model.generate(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                            generation_config=generation_config,
                                            output_hidden_states=output_hidden_states, use_cache=True,
                                            **generate_kwargs)

    def generate_text(self, tokenizer, queries: List[str], pixel_values, generation_config: dict) -> List[str]:
        """Answers to finished prompts (:meth:`InternVL2Processor.prompt`), cut at the template's separator."""
        self.img_context_token_id = InternVL2Processor(tokenizer, self.config).img_context_token_id
        sep = self.conv_template.sep
        inputs = tokenizer(queries, return_tensors='pt', padding=len(queries) > 1)
        config = dict(generation_config, eos_token_id=tokenizer.convert_tokens_to_ids(sep))
        if pixel_values is not None:
            pixel_values = pixel_values.to(self.device)
        output = self.generate(pixel_values=pixel_values, input_ids=inputs['input_ids'].to(self.device),
                               attention_mask=inputs['attention_mask'].to(self.device), **config)
        texts = tokenizer.batch_decode(output, skip_special_tokens=True)
        return [text.split(sep)[0].strip() for text in texts]

    def chat(self, tokenizer, pixel_values: Optional[torch.Tensor], question: str, generation_config: dict,
             history: Optional[List[Tuple[str, str]]] = None, return_history: bool = False,
             num_patches_list: Optional[Sequence[int]] = None, IMG_START_TOKEN: str = IMG_START_TOKEN,
             IMG_END_TOKEN: str = IMG_END_TOKEN, IMG_CONTEXT_TOKEN: str = IMG_CONTEXT_TOKEN, verbose: bool = False):
        """One chat turn, exactly as the official ``chat`` (greedy if ``do_sample=False``)."""
        if num_patches_list is None:
            num_patches_list = [pixel_values.shape[0]] if pixel_values is not None else []
        if pixel_values is not None and len(pixel_values) != sum(num_patches_list):
            raise ValueError(f'pixel_values has {len(pixel_values)} tiles but num_patches_list sums to '
                             f'{sum(num_patches_list)}')
        question = with_image_placeholder(question, pixel_values is not None, history)
        query = InternVL2Processor(tokenizer, self.config).prompt(question, history, num_patches_list)
        response = self.generate_text(tokenizer, [query], pixel_values, generation_config)[0]
        history = list(history or []) + [(question, response)]
        return (response, history) if return_history else response

    def batch_chat(self, tokenizer, pixel_values: Optional[torch.Tensor], questions: Sequence[str],
                   generation_config: dict, num_patches_list: Optional[Sequence[int]] = None, history=None,
                   return_history: bool = False, IMG_START_TOKEN: str = IMG_START_TOKEN,
                   IMG_END_TOKEN: str = IMG_END_TOKEN, IMG_CONTEXT_TOKEN: str = IMG_CONTEXT_TOKEN,
                   verbose: bool = False, image_counts: Optional[Sequence[int]] = None) -> List[str]:
        """Several single-turn questions at once (left padding); one image per question."""
        if history is not None or return_history:
            raise NotImplementedError('batch_chat does not support history; call chat() per conversation')
        num_patches_list = image_counts if image_counts is not None else num_patches_list
        if num_patches_list is None or len(num_patches_list) != len(questions):
            raise ValueError('batch_chat needs num_patches_list with one tile count per question')
        processor = InternVL2Processor(tokenizer, self.config)
        queries = [processor.prompt(q, None, [n] if pixel_values is not None else [])
                   for q, n in zip(questions, num_patches_list)]
        tokenizer.padding_side = 'left'
        return self.generate_text(tokenizer, queries, pixel_values, generation_config)

    # ---- checkpoints ----
    @classmethod
    def from_pretrained(cls, path: Union[str, Path], torch_dtype: Union[torch.dtype, str, None] = None,
                        device: Union[str, torch.device] = 'cpu', attn_implementation: str = 'sdpa',
                        **unused) -> 'InternVLChatModel':
        """Build on the meta device, then assign the checkpoint tensors (no second copy of the weights).

        ``torch_dtype`` defaults to the checkpoint's ``torch_dtype``. ``trust_remote_code`` and
        similar official arguments are accepted and ignored: nothing from the folder is executed.
        """
        unknown = set(unused) - {'trust_remote_code', 'low_cpu_mem_usage', 'use_flash_attn'}
        if unknown:
            raise TypeError(f'from_pretrained got unexpected argument(s) {sorted(unknown)}; place the model with '
                            "device='cuda' (one device) and pick attention with attn_implementation")
        path = Path(path)
        config = InternVLChatConfig.from_pretrained(path)
        dtype = dtype_from_name(torch_dtype, default=dtype_from_name(config.torch_dtype))
        with torch.device('meta'):
            model = cls(config, attn_implementation=attn_implementation)
        official = ckpt.iter_checkpoint_tensors(path, dtype=dtype, device=device)
        model.load_native_state_dict(ckpt.native_state_dict_from_official(official, config), source=str(path))
        materialize_rotary_buffers(model, torch.device(device))
        model.language_model.config.torch_dtype = dtype
        generation_file = path / GENERATION_CONFIG_NAME
        if generation_file.is_file():
            model._generation_config_text = generation_file.read_text(encoding='utf-8')
        return model.eval()

    def _tied_native_keys(self) -> set:
        llm = self.language_model
        if not getattr(llm.config, 'tie_word_embeddings', False):
            return set()
        return {ckpt.LLM_PREFIX + key for key in getattr(llm, '_tied_weights_keys', None) or []}

    def load_native_state_dict(self, state_dict: Dict[str, torch.Tensor], source: str = 'state_dict') -> None:
        """Strictly load native-named tensors (``assign=True``: works on a meta-device model)."""
        tied = self._tied_native_keys()
        expected = {k: v.shape for k, v in self.state_dict().items() if k not in tied}
        ckpt.check_state_dict(expected, state_dict, source)
        # Checked above; only tied keys (re-tied below) may be absent.
        self.load_state_dict(state_dict, strict=not tied, assign=True)
        if tied:
            self.language_model.tie_weights()
        meta = [name for name, t in list(self.named_parameters()) if t.is_meta]
        if meta:
            raise ValueError(f'{source}: parameters left unloaded: {meta[:8]}')

    def official_state_dict(self) -> Dict[str, torch.Tensor]:
        """This model's weights under the official checkpoint names."""
        tied = self._tied_native_keys()
        native = {k: v for k, v in self.state_dict().items() if k not in tied}
        return ckpt.official_state_dict(native, self.config)

    def save_pretrained(self, path: Union[str, Path], max_shard_size: Union[int, str] = '5GB', progress: bool = False,
                        **unused) -> None:
        """Write ``config.json``, ``generation_config.json`` and safetensors in the official layout
        (``progress``: a bar per shard)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        config = self.config
        if config.torch_dtype != dtype_name(self.dtype):
            config = config.with_updates(torch_dtype=dtype_name(self.dtype))
        config.save_pretrained(path)
        default = {'_from_model_config': True, 'transformers_version': transformers.__version__}
        generation = self._generation_config_text or json.dumps(default, indent=2, sort_keys=True) + '\n'
        (path / GENERATION_CONFIG_NAME).write_text(generation, encoding='utf-8')
        ckpt.save_checkpoint(self.official_state_dict(), path, max_shard_size=max_shard_size, progress=progress)
