"""The official InternVL2 ``config.json``, validated, with the original dict kept verbatim.

``InternVLChatConfig`` never runs code named by ``auto_map``; it reads the fields the native model
needs into typed attributes and writes the untouched dict back, so a loaded folder saves to an
identical ``config.json``.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch

from .conversation import get_template

CONFIG_NAME = 'config.json'
SUPPORTED_LLM_ARCHITECTURES = ('InternLM2ForCausalLM', 'LlamaForCausalLM', 'Qwen2ForCausalLM', 'Phi3ForCausalLM')
_DTYPES = {'float32': torch.float32, 'float16': torch.float16, 'bfloat16': torch.bfloat16}


def dtype_from_name(name: Union[str, torch.dtype, None], default: torch.dtype = torch.float32) -> torch.dtype:
    if name is None or name == 'auto':
        return default
    if isinstance(name, torch.dtype):
        return name
    key = name.replace('torch.', '')
    if key not in _DTYPES:
        raise ValueError(f'unsupported torch_dtype {name!r}; use one of {sorted(_DTYPES)}')
    return _DTYPES[key]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace('torch.', '')


def _require(cfg: Dict[str, Any], key: str, where: str) -> Any:
    if key not in cfg:
        raise ValueError(f'{where} has no {key!r}: this is not a valid InternVL2 config')
    return cfg[key]


@dataclass(frozen=True)
class VisionConfig:
    """InternViT hyper-parameters (``vision_config`` of the official config)."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    image_size: int
    patch_size: int
    num_channels: int = 3
    qkv_bias: bool = False
    qk_normalization: bool = False
    norm_type: str = 'rms_norm'
    layer_norm_eps: float = 1e-6
    hidden_act: str = 'gelu'
    initializer_factor: float = 0.1
    drop_path_rate: float = 0.0
    attention_dropout: float = 0.0
    dropout: float = 0.0

    @classmethod
    def from_dict(cls, cfg: Dict[str, Any], where: str = 'vision_config') -> 'VisionConfig':
        required = ('hidden_size', 'num_hidden_layers', 'num_attention_heads', 'intermediate_size', 'image_size',
                    'patch_size')
        fields = {k: _require(cfg, k, where) for k in required}
        optional = cls.__dataclass_fields__.keys() - set(required)
        fields.update({k: cfg[k] for k in optional if k in cfg})
        vision = cls(**fields)
        if vision.hidden_size % vision.num_attention_heads:
            raise ValueError(f'{where}: hidden_size {vision.hidden_size} is not divisible by '
                             f'num_attention_heads {vision.num_attention_heads}')
        if vision.norm_type not in ('layer_norm', 'rms_norm'):
            raise ValueError(f"{where}: norm_type {vision.norm_type!r} is not 'layer_norm' or 'rms_norm'")
        return vision


class InternVLChatConfig:
    """Validated view of an official ``InternVLChatConfig`` dict (``model_type == 'internvl_chat'``)."""

    def __init__(self, config: Dict[str, Any], source: str = 'config', text: Optional[str] = None):
        self._raw = copy.deepcopy(config)
        self._text = text  # the file as read, written back verbatim while the config is unchanged
        self.source = source
        if config.get('model_type') != 'internvl_chat':
            raise ValueError(f"{source} has model_type {config.get('model_type')!r}, expected 'internvl_chat': "
                             'this is not an InternVL2 checkpoint')
        self.vision = VisionConfig.from_dict(_require(config, 'vision_config', source), f'{source}: vision_config')
        self.llm_config: Dict[str, Any] = _require(config, 'llm_config', source)
        self.llm_architecture = self._llm_architecture()
        self.force_image_size: Optional[int] = config.get('force_image_size')
        self.downsample_ratio: float = config.get('downsample_ratio', 0.5)
        self.select_layer: int = config.get('select_layer', -1)
        self.ps_version: str = config.get('ps_version', 'v1')
        self.template: str = _require(config, 'template', source)
        self.system_message: Optional[str] = config.get('system_message')
        self.dynamic_image_size: bool = config.get('dynamic_image_size', False)
        self.use_thumbnail: bool = config.get('use_thumbnail', False)
        self.min_dynamic_patch: int = config.get('min_dynamic_patch', 1)
        self.max_dynamic_patch: int = config.get('max_dynamic_patch', 6)
        self.torch_dtype: Optional[str] = config.get('torch_dtype')
        self._validate()

    def _llm_architecture(self) -> str:
        archs = self.llm_config.get('architectures') or [None]
        if archs[0] not in SUPPORTED_LLM_ARCHITECTURES:
            raise ValueError(f'{self.source}: llm_config.architectures[0] = {archs[0]!r} is not supported; '
                             f'supported LLM architectures: {list(SUPPORTED_LLM_ARCHITECTURES)}')
        return archs[0]

    def _validate(self) -> None:
        get_template(self.template)
        scale = 1 / self.downsample_ratio
        if scale != int(scale) or (self.image_size // self.vision.patch_size) % int(scale):
            raise ValueError(f'{self.source}: downsample_ratio {self.downsample_ratio} must be 1/k with k dividing '
                             f'the patch grid {self.image_size // self.vision.patch_size}')
        if self.ps_version not in ('v1', 'v2'):
            raise ValueError(f"{self.source}: ps_version {self.ps_version!r} is not 'v1' or 'v2'")
        for key in ('hidden_size', 'num_hidden_layers', 'num_attention_heads', 'vocab_size'):
            _require(self.llm_config, key, f'{self.source}: llm_config')

    # ---- derived values, named as in the official model ----
    @property
    def image_size(self) -> int:
        return self.force_image_size or self.vision.image_size

    @property
    def num_image_token(self) -> int:
        return int((self.image_size // self.vision.patch_size) ** 2 * (self.downsample_ratio ** 2))

    @property
    def llm_hidden_size(self) -> int:
        return self.llm_config['hidden_size']

    # ---- reading and writing ----
    @classmethod
    def from_pretrained(cls, path: Union[str, Path]) -> 'InternVLChatConfig':
        path = Path(path)
        if not path.is_dir():
            from xtuner_ext.embedded import missing_path_hint
            raise FileNotFoundError(f'{path} is not a directory: expected an InternVL2 checkpoint folder.'
                                    + missing_path_hint(path))
        file = path / CONFIG_NAME
        if not file.is_file():
            raise FileNotFoundError(f'{path} has no {CONFIG_NAME}: not an InternVL2 checkpoint folder')
        try:
            config = json.loads(file.read_bytes())
        except json.JSONDecodeError as err:
            raise ValueError(f'{file} is not valid JSON: {err}') from err
        return cls(config, source=str(file), text=file.read_text(encoding='utf-8'))

    def to_dict(self) -> Dict[str, Any]:
        return copy.deepcopy(self._raw)

    def with_updates(self, **fields: Any) -> 'InternVLChatConfig':
        """A copy with top-level fields replaced (e.g. ``torch_dtype`` on save)."""
        raw = self.to_dict()
        raw.update(fields)
        return InternVLChatConfig(raw, self.source)

    def to_json_string(self) -> str:
        if self._text is not None:
            return self._text
        # The layout PretrainedConfig.to_json_string writes.
        return json.dumps(self._raw, indent=2, sort_keys=True) + '\n'

    def save_pretrained(self, path: Union[str, Path]) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / CONFIG_NAME).write_text(self.to_json_string(), encoding='utf-8')

    def __repr__(self) -> str:
        return (f'InternVLChatConfig(llm={self.llm_architecture}, vit_layers={self.vision.num_hidden_layers}, '
                f'image_size={self.image_size}, num_image_token={self.num_image_token}, template={self.template!r})')
