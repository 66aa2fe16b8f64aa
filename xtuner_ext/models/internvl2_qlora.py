"""InternVL2 QLoRA for mmengine/XTuner: the native InternVL2, a 4-bit LLM, LoRA, and a strict
trainable-only checkpoint.

Each step of building the model is one small function below; the constructor only runs them in
order. Trainable parameters (LoRA, projector, unfrozen towers) are kept in fp32 while frozen
weights stay in ``torch_dtype``: that keeps a bf16 model trainable under an fp16 ``GradScaler``
(stock XTuner's QLoRA crashes there) and gives AdamW full-precision state.
"""
from __future__ import annotations

import logging
import os
from typing import Dict, List, Optional, Sequence, Union

import torch
from mmengine.logging import MessageHub, print_log
from mmengine.model import BaseModel
from torch import nn

from xtuner_ext.safe_load import mmengine_checkpoint_globals, naming_corrupt_checkpoint
from xtuner_ext.models.internvl2 import InternVL2Processor, InternVLChatModel
from xtuner_ext.models.answer_loss import answer_loss, check_fused_loss
from xtuner_ext.models.packed_attention import enable_packed_attention, run_packed_decoder
from xtuner_ext.models.quantization import QuantizationSettings, eval_mode_keeping_4bit, quantize_linear_layers
from xtuner_ext.models.liger_layers import use_liger_layers
from xtuner_ext.models.lora_addmm import use_lora_addmm
from xtuner_ext.models.recompute import select_recomputed_layers
from xtuner_ext.models.vision_cache import VisionFeatureCache, stochastic_parts

IGNORE_INDEX = -100
DtypeLike = Union[str, torch.dtype]


def default_device() -> torch.device:
    return torch.device('cuda' if torch.cuda.is_available() else 'cpu')


def resolve_dtype(value: DtypeLike, device: torch.device) -> torch.dtype:
    """``'auto'``: bf16 on a GPU, fp32 on the CPU (where bf16 matmuls are slow or emulated)."""
    if value == 'auto':
        return torch.bfloat16 if device.type == 'cuda' else torch.float32
    return getattr(torch, value) if isinstance(value, str) else value


def build_lora_config(lora):
    """Accept a peft ``LoraConfig`` or its keyword dict; ``target_modules`` must be explicit."""
    from peft import LoraConfig

    if isinstance(lora, dict):
        lora = {k: v for k, v in lora.items() if k != 'type'}
        lora = LoraConfig(**lora)
    if not lora.target_modules:
        raise ValueError('LoRA target_modules must be listed explicitly (e.g. the attention and MLP projections '
                         "['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']); "
                         "guessing 'all linear' would also adapt the output head")
    return lora


def quantization_settings(spec, device: torch.device) -> Optional[QuantizationSettings]:
    if not spec:
        return None
    spec = dict(spec)
    spec['compute_dtype'] = resolve_dtype(spec.get('compute_dtype', 'auto'), device)
    if isinstance(spec.get('quant_storage'), str):
        spec['quant_storage'] = getattr(torch, spec['quant_storage'])
    if 'skip_modules' in spec:
        spec['skip_modules'] = tuple(spec['skip_modules'])
    return QuantizationSettings(**spec)


def _cast_inputs_to_own_dtype(module: nn.Module, args: tuple) -> tuple:
    dtype = next(module.parameters()).dtype
    return tuple(a.to(dtype) if torch.is_tensor(a) and a.is_floating_point() else a for a in args)


def restored_summary(model: nn.Module) -> str:
    """One line: what a trainable-state load restored, and what stays as loaded from the base model."""
    groups = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            group = 'LoRA' if '.lora_' in name else 'projector' if '.mlp1.' in f'.{name}' else name.split('.')[1]
            groups[group] = groups.get(group, 0) + param.numel()
    trained = sum(groups.values())
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    parts = ', '.join(f'{group} {count:,}' for group, count in groups.items())
    return (f'{type(model).__name__}: restored {trained:,} trainable parameters ({parts}) strictly; the {frozen:,} '
            f'frozen ones stay as loaded from {getattr(model, "model_path", "the base model")}')


class InternVL2QLoRA(BaseModel):
    """InternVL2 fine-tuning model: optional 4-bit LLM/ViT, LoRA adapters, freeze switches.

    Args:
        model_path: an official InternVL2 folder (config.json, safetensors, tokenizer).
        freeze_llm / freeze_visual_encoder / freeze_projector: keep those weights fixed
            (LoRA adapters on a frozen part still train).
        quantization_llm / quantization_vit: ``None`` or a dict of :class:`QuantizationSettings`
            fields, e.g. ``dict(quant_type='nf4', double_quant=True, compute_dtype='auto')``.
        llm_lora / visual_encoder_lora: ``None``, a peft ``LoraConfig`` or its keyword dict.
        torch_dtype: dtype of the frozen weights; ``'auto'`` = bf16 on GPU, fp32 on CPU.
        gradient_checkpointing: recompute ViT and LLM layers in backward.
        recompute_llm_layers: with ``gradient_checkpointing``, recompute only the first this many
            LLM decoder layers and keep the others' activations (faster, more memory; same
            gradients; ``recompute.py``); ``None`` recomputes all.
        recompute_keeps: outputs the recomputed layers keep instead of re-running the ops that make
            them, from ``('attention', 'down_proj')`` (a hidden-size vector per token and layer each;
            same gradients; ``recompute.py``).
        packed_attention: kernel for packed rows: ``'auto'`` (one varlen flash call per layer on
            CUDA bf16/fp16, per-sample SDPA elsewhere), ``'varlen'``, ``'split'`` or ``'cudnn'`` (per-sample
            SDPA, cuDNN's kernel preferred) (``packed_attention.py``).
        liger_layers: run the LLM's RMSNorms, SwiGLU MLPs and RoPE through Liger's fused kernels on CUDA
            (``liger_layers.py``; the CPU keeps transformers' code).
        lora_addmm: add each LoRA update inside one GEMM (``torch.addmm``) instead of peft's clone,
            scale and add (``lora_addmm.py``; same function, one rounding instead of three).
        pretrained_pth: a trainable-state checkpoint of this model to start from (strict).
        generation_config: used by ``mode='predict'`` and :meth:`chat` (greedy by default).
        processor: overrides for the :class:`InternVL2Processor` (tiling, system message), e.g.
            ``dict(max_dynamic_patch=6)``; configs give the dataset the same dict, so :meth:`chat`
            sees images the way training did.
        fused_loss: ``'liger'``: output head + cross-entropy fused chunk-wise (CUDA; the CPU runs the
            plain loss); ``None``: plain. Same loss either way (``answer_loss.py``).
        frozen_vision_no_grad: run a ViT with nothing to train under ``torch.no_grad`` (no
            activations kept, no recomputation); gradients are the same.
        vision_feature_cache_gib: keep each training image's frozen-ViT features on the device, up
            to this many GiB, so later epochs skip the ViT for it (``vision_cache.py``; same loss and
            gradients); ``None``: off. Needs a frozen, dropout-free ViT under ``frozen_vision_no_grad``.

    Batches from ``internvl2_packed_collate_fn`` (one row, ``position_ids``, ``cu_seqlens``) train
    padding-free; right-padded batches from ``internvl2_collate_fn`` train as before.
    """

    def __init__(self, model_path: str, freeze_llm: bool = True, freeze_visual_encoder: bool = True,
                 freeze_projector: bool = False, quantization_llm: Optional[dict] = None,
                 quantization_vit: Optional[dict] = None, llm_lora=None, visual_encoder_lora=None,
                 torch_dtype: DtypeLike = 'auto', gradient_checkpointing: bool = True,
                 pretrained_pth: Optional[str] = None, generation_config: Optional[dict] = None,
                 processor: Optional[dict] = None, fused_loss: Optional[str] = None,
                 frozen_vision_no_grad: bool = True, recompute_llm_layers: Optional[int] = None,
                 packed_attention: str = 'auto', liger_layers: bool = False, lora_addmm: bool = False,
                 vision_feature_cache_gib: Optional[float] = None, recompute_keeps: Sequence[str] = (),
                 data_preprocessor: Optional[dict] = None):
        super().__init__(data_preprocessor=data_preprocessor)
        if quantization_llm and not llm_lora and not freeze_llm:
            raise ValueError('quantization_llm needs freeze_llm=True or llm_lora: 4-bit weights cannot train')
        if quantization_vit and not visual_encoder_lora and not freeze_visual_encoder:
            raise ValueError('quantization_vit needs freeze_visual_encoder=True or visual_encoder_lora')
        self.model_path = model_path
        self.generation_config = dict(generation_config or dict(max_new_tokens=64, do_sample=False))
        device = default_device()
        dtype = resolve_dtype(torch_dtype, device)

        self.model = InternVLChatModel.from_pretrained(model_path, torch_dtype=dtype, device='cpu')
        self.processor = InternVL2Processor.from_pretrained(model_path, **(processor or {}))
        self.tokenizer = self.processor.tokenizer
        self.model.img_context_token_id = self.processor.img_context_token_id
        self._quantize(quantization_llm, quantization_vit, device)
        self.model.to(device)
        if llm_lora:
            self.model.language_model = self._add_lora(self.model.language_model, llm_lora)
        if visual_encoder_lora:
            self.model.vision_model = self._add_lora(self.model.vision_model, visual_encoder_lora)
        self._freeze(freeze_llm, freeze_visual_encoder, freeze_projector)
        self._trainable_to_fp32()
        enable_packed_attention(self.model.language_model, packed_attention)
        if liger_layers:
            use_liger_layers(self._decoder_and_head()[0])
        if lora_addmm:
            use_lora_addmm(self.model)
        self.fused_loss = fused_loss
        check_fused_loss(fused_loss, self._decoder_and_head()[1])
        self.frozen_vision_no_grad = frozen_vision_no_grad
        self.frozen_vision_own_dtype = True  # see _frozen_vision_tokens (the bench switches it to time it)
        self.vision_cache = self._vision_cache(vision_feature_cache_gib)
        self.set_recompute(gradient_checkpointing, recompute_llm_layers, recompute_keeps)
        self._register_load_state_dict_pre_hook(self._check_trainable_state, with_module=False)
        if pretrained_pth:
            self.load_trainable_state(pretrained_pth)
        self.train()  # one consistent mode (from_pretrained left the inner model in eval)

    # ---- building steps ----
    def _quantize(self, quantization_llm, quantization_vit, device):
        llm_settings = quantization_settings(quantization_llm, device)
        if llm_settings:
            quantize_linear_layers(self.model.language_model, llm_settings, device)
        vit_settings = quantization_settings(quantization_vit, device)
        if vit_settings:
            quantize_linear_layers(self.model.vision_model, vit_settings, device)

    def _freeze(self, freeze_llm: bool, freeze_visual_encoder: bool, freeze_projector: bool):
        """Runs after LoRA is added (peft freezes every non-adapter weight): adapters always train,
        other weights train where their part is not frozen, 4-bit weights never."""
        import bitsandbytes as bnb

        for part, frozen in ((self.model.language_model, freeze_llm), (self.model.vision_model, freeze_visual_encoder),
                             (self.model.mlp1, freeze_projector)):
            for name, param in part.named_parameters():
                adapter = '.lora_' in name
                param.requires_grad_(adapter or (not frozen and not isinstance(param, bnb.nn.Params4bit)))

    @staticmethod
    def _add_lora(module: nn.Module, lora) -> nn.Module:
        from peft import get_peft_model, inject_adapter_in_model

        config = build_lora_config(lora)
        if hasattr(module, 'generation_config'):  # a transformers causal LM
            return get_peft_model(module, config)
        return inject_adapter_in_model(config, module)

    def _trainable_to_fp32(self):
        for param in self.model.parameters():
            if param.requires_grad and param.dtype != torch.float32:
                param.data = param.data.float()
        # An fp32 projector then meets the bf16 ViT output: cast at its door (autocast does this in
        # training, but chat() runs without autocast).
        self.model.mlp1.register_forward_pre_hook(_cast_inputs_to_own_dtype)

    def _vision_cache(self, max_gib: Optional[float]) -> Optional[VisionFeatureCache]:
        """Caching is only the same training when the ViT's output can never change: a ViT that trains
        is a contradiction (raise); a folder whose ViT has drop path or dropout turns it off, with a warning."""
        if max_gib is None:
            return None
        vision = self.model.vision_model
        if any(p.requires_grad for p in vision.parameters()) or not self.frozen_vision_no_grad:
            raise ValueError(f'vision_feature_cache_gib={max_gib} needs a frozen ViT run without gradients '
                             '(freeze_visual_encoder=True, no visual_encoder_lora, frozen_vision_no_grad=True); '
                             'set vision_feature_cache_gib=None')
        stochastic = stochastic_parts(vision)
        if stochastic:
            print_log(f'vision_feature_cache_gib={max_gib} is off: the ViT of {self.model_path} has dropout or drop '
                      f'path ({", ".join(stochastic[:3])}), so its features differ at every step. Set '
                      'vision_feature_cache_gib=None to silence this', 'current', logging.WARNING)
            return None
        return VisionFeatureCache(max_gib)

    def set_recompute(self, enabled: bool, llm_layers: Optional[int] = None, keeps: Sequence[str] = ()) -> None:
        """Gradient checkpointing on/off; ``llm_layers``: how many LLM layers recompute (None: all);
        ``keeps``: outputs those layers keep (``recompute.RECOMPUTE_KEEPS``)."""
        if not enabled:
            if llm_layers is not None or keeps:
                name = f'recompute_llm_layers={llm_layers}' if llm_layers is not None else f'recompute_keeps={keeps}'
                raise ValueError(f'{name} needs gradient_checkpointing=True')
            self.model.gradient_checkpointing_disable()
            return
        self.model.gradient_checkpointing_enable()
        select_recomputed_layers(self._decoder_and_head()[0], llm_layers, tuple(keeps))

    def init_weights(self) -> None:
        """Weights come from ``model_path`` (and peft's LoRA init); the runner must not re-init."""

    # ---- trainable state: saved, loaded back strictly ----
    def trainable_names(self) -> List[str]:
        return [name for name, p in self.named_parameters() if p.requires_grad]

    def state_dict(self, *args, destination=None, prefix: str = '', keep_vars: bool = False):
        """Only what trains (LoRA, projector, unfrozen towers): frozen weights come from ``model_path``."""
        full = super().state_dict(*args, destination=destination, prefix=prefix, keep_vars=keep_vars)
        keep = {prefix + name for name in self.trainable_names()}
        for key in [k for k in full if k.startswith(prefix) and k not in keep]:
            del full[key]
        return full

    def _check_trainable_state(self, state_dict, prefix, *unused):
        """Pre-hook of every load (also mmengine's, which bypasses :meth:`load_state_dict`): the checkpoint must
        hold exactly what trains. It also makes sure the post-hook below runs at the end of the load."""
        expected = {prefix + name: p.shape for name, p in self.named_parameters() if p.requires_grad}
        got = {k: v for k, v in state_dict.items() if k.startswith(prefix)}
        missing = sorted(set(expected) - set(got))
        unexpected = sorted(set(got) - set(expected))
        mismatched = sorted(k for k in set(expected) & set(got) if tuple(got[k].shape) != tuple(expected[k]))
        if missing or unexpected or mismatched:
            raise ValueError(
                'checkpoint does not fit this InternVL2QLoRA model (same LoRA r/targets and freeze switches?): '
                f'{len(missing)} missing {missing[:5]}, {len(unexpected)} unexpected {unexpected[:5]}, '
                f'{len(mismatched)} with other shapes {mismatched[:5]}')
        self._load_prefix = prefix
        if getattr(self, '_frozen_weights_hook', None) is None:
            self._frozen_weights_hook = self.register_load_state_dict_post_hook(
                InternVL2QLoRA._account_for_frozen_weights)

    def _account_for_frozen_weights(self, incompatible_keys) -> None:
        """Post-hook of every load: frozen weights come from ``model_path``, so a trainable-only checkpoint lacks
        them by design (the pre-hook checked that every trainable key is there); they are not "missing".
        Says in one line what was restored."""
        prefix = self._load_prefix
        incompatible_keys.missing_keys[:] = [k for k in incompatible_keys.missing_keys if not k.startswith(prefix)]
        print_log(restored_summary(self), 'current')

    def load_trainable_state(self, path: str) -> None:
        """Load an ``iter_N.pth`` (mmengine) or a bare trainable state dict, strictly."""
        if os.path.isdir(path):
            raise ValueError(f'{path} is a folder: a DeepSpeed checkpoint (saved with save_optimizer=True). Train '
                             'with save_optimizer=False to get one file, or export one with DeepSpeed\'s '
                             'zero_to_fp32 tool')
        # no arbitrary pickles; an incomplete file is named as such
        with naming_corrupt_checkpoint(path), torch.serialization.safe_globals(mmengine_checkpoint_globals()):
            checkpoint = torch.load(path, map_location='cpu', weights_only=True)
        state = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else checkpoint
        self.load_state_dict(state)

    # ---- forward ----
    def forward(self, data: dict, data_samples=None, mode: str = 'loss'):
        if mode == 'loss':
            return {'loss': self.compute_loss(**data)}
        if mode == 'tensor':
            return self.model(pixel_values=self._pixels(data.get('pixel_values')), input_ids=data['input_ids'],
                              attention_mask=data.get('attention_mask'), image_flags=data.get('image_flags')).logits
        if mode == 'predict':
            return self.predict(**data)
        raise NotImplementedError(f"mode must be 'loss', 'tensor' or 'predict', got {mode!r}")

    def _pixels(self, pixel_values: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        if pixel_values is None:
            return None
        return pixel_values.to(self.model.vision_model.embeddings.patch_embedding.weight.dtype)

    def _decoder_and_head(self):
        llm = self.model.language_model
        base = llm.get_base_model() if hasattr(llm, 'get_base_model') else llm
        return base.get_decoder(), base.get_output_embeddings()

    def _image_features(self, pixel_values, image_flags, image_keys=None, image_tiles=None) -> Optional[torch.Tensor]:
        if pixel_values is None:
            return None
        pixel_values = self._pixels(pixel_values)
        vision_trains = any(p.requires_grad for p in self.model.vision_model.parameters())
        if self.frozen_vision_no_grad and not vision_trains:
            with torch.no_grad():
                if self.vision_cache is not None and image_keys is not None:
                    hits = self.vision_cache.hits
                    tokens = self.vision_cache.features(pixel_values, image_keys, image_tiles,
                                                        self._frozen_vision_tokens)
                    # in each training log line: the share of this batch's images served from the cache
                    MessageHub.get_current_instance().update_scalar(
                        'train/vit_cached', (self.vision_cache.hits - hits) / len(image_keys))
                else:
                    tokens = self._frozen_vision_tokens(pixel_values)
            vit_embeds = self.model.mlp1(tokens)
        else:
            vit_embeds = self.model.extract_feature(pixel_values)
        if image_flags is not None:
            vit_embeds = vit_embeds[image_flags.reshape(-1) == 1]
        return vit_embeds

    def _frozen_vision_tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The frozen ViT in its own dtype when autocast would compute in that dtype anyway: autocast runs
        each LayerNorm in fp32 (a float32 copy of the input, a float32 output) that the next linear casts
        straight back, two extra passes over every ViT token per norm for the same rounded values
        (bit-identical on the CPU; the CUDA test checks its kernels)."""
        device = pixel_values.device.type
        if self.frozen_vision_own_dtype and torch.is_autocast_enabled(device) \
                and torch.get_autocast_dtype(device) == pixel_values.dtype:
            with torch.autocast(device, enabled=False):
                return self.model.vision_tokens(pixel_values)
        return self.model.vision_tokens(pixel_values)

    def compute_loss(self, input_ids: torch.Tensor, labels: torch.Tensor, pixel_values=None,
                     attention_mask=None, image_flags=None, position_ids=None, cu_seqlens=None,
                     image_keys=None, image_tiles=None, **unused) -> torch.Tensor:
        """Mean next-token loss over answer tokens (``answer_loss.py``). With ``cu_seqlens`` the
        batch is one packed row of samples that attend only within themselves. ``image_keys`` /
        ``image_tiles`` (one per image, from the collate functions) let the vision cache serve repeats."""
        features = self._image_features(pixel_values, image_flags, image_keys, image_tiles)
        embeds = self.model._embed_with_images(input_ids, features)
        decoder, head = self._decoder_and_head()
        if cu_seqlens is not None:
            if position_ids is None:
                raise ValueError('a packed batch (cu_seqlens) needs position_ids restarting at each sample; build it '
                                 'with internvl2_packed_collate_fn')
            hidden = run_packed_decoder(decoder, embeds, position_ids, cu_seqlens)
        else:
            hidden = decoder(inputs_embeds=embeds, attention_mask=attention_mask, use_cache=False).last_hidden_state
        return answer_loss(hidden, labels, head, self.fused_loss)

    # ---- generation ----
    @torch.no_grad()
    def chat(self, image: Union[str, 'PIL.Image.Image', None], question: str, history: Optional[list] = None,
             generation_config: Optional[dict] = None) -> str:
        """One chat turn (greedy by default) with the official prompt, the image tiled as in training.
        ``history``: earlier (question, answer) pairs of the same conversation."""
        pixel_values = self.processor.pixel_values(image) if image is not None else None
        query = self.processor.prompt(question, history, [len(pixel_values)] if pixel_values is not None else [])
        return self._generate([query], pixel_values, generation_config)[0]

    @torch.no_grad()
    def chat_batch(self, images: List[Union[str, 'PIL.Image.Image']], questions: List[str],
                   generation_config: Optional[dict] = None) -> List[str]:
        """Single-turn answers to several image questions in one left-padded ``generate``: the same
        prompts and tiling as :meth:`chat`. Why: a 4-bit LoRA model's decoding step costs about the
        same for one row as for eight (per-layer call overhead), so evaluation hooks answer all at once."""
        if len(images) != len(questions) or any(image is None for image in images):
            raise ValueError('chat_batch needs one image per question; ask text-only questions with chat()')
        tiles = [self.processor.pixel_values(image) for image in images]
        queries = [self.processor.prompt(q, None, [len(t)]) for q, t in zip(questions, tiles)]
        return self._generate(queries, torch.cat(tiles), generation_config)

    def _generate(self, queries: List[str], pixel_values: Optional[torch.Tensor],
                  generation_config: Optional[dict]) -> List[str]:
        """Answers to finished prompts, in eval mode; several prompts are left-padded (answers grow on the right)."""
        if pixel_values is not None:
            pixel_values = self._pixels(pixel_values.to(self.model.device))
        saved_side, self.tokenizer.padding_side = self.tokenizer.padding_side, 'left'
        try:
            with self._inference():
                return self.model.generate_text(self.tokenizer, queries, pixel_values,
                                                dict(generation_config or self.generation_config))
        finally:
            self.tokenizer.padding_side = saved_side

    def _inference(self):
        """Eval mode for chat(), 4-bit layers' flags kept (see ``eval_mode_keeping_4bit``)."""
        return eval_mode_keeping_4bit(self)

    def predict(self, questions: List[str], images: List[Optional[str]], **unused) -> List[Dict[str, str]]:
        return [dict(question=q, image=img, answer=self.chat(img, q)) for q, img in zip(questions, images)]

    @torch.no_grad()
    def answer_log_likelihood(self, image: Union[str, 'PIL.Image.Image', None], question: str,
                              answers: List[str]) -> List[float]:
        """Mean log-probability per token of each answer to ``question`` on ``image``, each encoded
        exactly as a training record (the score is minus that record's training loss). One forward
        pass for all answers; the image is encoded once."""
        pixel_values = self.processor.pixel_values(image) if image is not None else None
        tiles = len(pixel_values) if pixel_values is not None else 0
        with self._inference():
            return self._answer_log_likelihood(pixel_values, tiles, question, answers)

    def _answer_log_likelihood(self, pixel_values, tiles: int, question: str, answers: List[str]) -> List[float]:
        encoded = [self.processor.encode(dict(image='image' if tiles else None, conversations=[
            dict(value=question), dict(value=answer)]), tiles, 1 << 62) for answer in answers]
        length, device = max(len(e.input_ids) for e in encoded), self.model.device
        input_ids = torch.zeros(len(encoded), length, dtype=torch.long, device=device)
        labels = torch.full_like(input_ids, IGNORE_INDEX)
        attention_mask = torch.zeros_like(input_ids, dtype=torch.bool)
        for row, e in enumerate(encoded):  # right-padded, as in training
            input_ids[row, :len(e.input_ids)] = torch.tensor(e.input_ids)
            labels[row, :len(e.labels)] = torch.tensor(e.labels)
            attention_mask[row, :len(e.input_ids)] = True
        vit_embeds = None
        if pixel_values is not None:
            vit_embeds = self.model.extract_feature(self._pixels(pixel_values.to(device))).repeat(len(encoded), 1, 1)
        decoder, head = self._decoder_and_head()
        hidden = decoder(inputs_embeds=self.model._embed_with_images(input_ids, vit_embeds),
                         attention_mask=attention_mask, use_cache=False).last_hidden_state
        targets = labels[:, 1:]
        answer = targets != IGNORE_INDEX
        log_probs = torch.log_softmax(head(hidden[:, :-1]).float(), dim=-1)
        picked = log_probs.gather(-1, targets.clamp(min=0)[..., None])[..., 0] * answer
        return (picked.sum(1) / answer.sum(1).clamp(min=1)).tolist()
