"""Seeded random InternVL2 checkpoints in the official layout, with a tokenizer built here.

``make_tiny_model`` writes ``config.json`` (official ``InternVLChatConfig`` layout, ``auto_map``
included), ``generation_config.json``, ``model.safetensors`` (bf16) and tokenizer files. The
``tiny`` preset is the embedded default for demos and tests (``llm='qwen2'`` / ``'phi3'`` give the 1B's and
4B's LLM families with their templates); ``internvl2-1b`` ... ``internvl2-26b`` have the released models'
dimensions (random weights, small tokenizer) for meta-device checks and full-size benchmarks.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Sequence, Tuple, Union

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PretrainedConfig, PreTrainedTokenizerFast

from .configuration import InternVLChatConfig
from .conversation import IMG_CONTEXT_TOKEN, IMG_END_TOKEN, IMG_START_TOKEN

BASE_SPECIAL_TOKENS = ('<unk>', '<s>', '</s>')
ADDED_SPECIAL_TOKENS = ('<|im_end|>', '<|im_start|>', IMG_START_TOKEN, IMG_END_TOKEN, IMG_CONTEXT_TOKEN, '<quad>',
                        '</quad>', '<ref>', '</ref>', '<box>', '</box>')
BPE_VOCAB_SIZE = 448  # incl. the three base specials; the added specials follow (ids 448..458)

_CORPUS = """\
请你根据这张图片，讲一个脑洞大开的梗。
这张图片里有一只猫坐在窗台上晒太阳。
图中的小狗正在草地上追着一个红色的球。
请描述一下这幅画的颜色和构图。
天空很蓝，远处有几座白色的雪山。
一个小朋友拿着气球在公园里奔跑。
桌子上放着一杯咖啡和一本打开的书。
这是一张城市夜景的照片，灯光非常漂亮。
请用一句话总结图片的主要内容。
画面左边是一棵大树，右边是一条小河。
他们在厨房里一起做饭，看起来很开心。
这只熊猫正在吃竹子，表情十分认真。
如果这只猫会说话，它会说：今天的鱼呢？
老板说明天放假，结果是在做梦。
程序员看到这段代码，默默地关上了电脑。
我的减肥计划从明天开始，每天都是明天。
今天的天气很好，适合出去散步。
上海是一个国际化的大城市。
人工智能可以帮助人们更好地理解世界。
书生多模态大模型能够看图说话。
这个梗的笑点在于出乎意料的反转。
请告诉我图片中有几个人。
地铁上大家都在低头看手机。
下雨了，街上的行人都打着伞。
一只鸭子站在桥上，好像在思考人生。
This picture shows a cat sitting on a windowsill in the sun.
A small dog is chasing a red ball across the green grass.
Please describe the colors and the composition of this painting.
The sky is blue and there are white mountains in the distance.
A child is running through the park holding a balloon.
There is a cup of coffee and an open book on the table.
Tell me a funny joke about this image.
What is the main object in the picture?
The city lights look beautiful at night.
How many people can you see in this photo?
The robot said hello and then forgot what it wanted to say.
My diet starts tomorrow, and tomorrow never comes.
The model answers questions about images and text.
A duck stands on the bridge as if it were thinking about life.
Everyone on the subway is looking at their phones.
It is raining and the people on the street carry umbrellas.
The panda is eating bamboo with a very serious face.
Write a short caption for this image, please.
The answer is 42, but nobody remembers the question.
Numbers like 1, 2, 3 and 100 appear in many questions.
User: what do you see? Assistant: I see a bird on a branch.
The box in the corner contains an old camera and some letters.
Please answer in English or in Chinese, 请用中文或英文回答。
"""


def training_corpus() -> list:
    return [line for line in _CORPUS.splitlines() if line.strip()]


CHARACTER_REPEATS = 20  # each extra character fed alone this often: its bytes merge before any word does


def build_tokenizer(role_tokens: Tuple[str, ...] = (), extra_texts: Sequence[str] = (),
                    vocab_size: int = BPE_VOCAB_SIZE) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on the built-in corpus; ``<s>`` is prepended like InternLM2's tokenizer.

    ``role_tokens``: a template's own special tokens (Phi-3's ``<|end|>`` ...), appended after the others.
    ``extra_texts`` (e.g. a data set's answers) join the corpus and every character in them becomes
    one token, so a small model trained on them generates whole characters, never stray UTF-8 bytes
    (which decode to U+FFFD). Raises ValueError when ``vocab_size`` is too small for that.
    """
    tokenizer = Tokenizer(models.BPE(unk_token='<unk>'))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(BASE_SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    characters = sorted({c for text in extra_texts for c in text if not c.isspace()})
    tokenizer.train_from_iterator(training_corpus() + list(extra_texts) + characters * CHARACTER_REPEATS,
                                  trainer=trainer)
    split = [c for c in characters if len(tokenizer.encode(c).ids) != 1]
    if split:
        raise ValueError(f'vocab_size={vocab_size} leaves {len(split)} characters of the extra texts in several '
                         f'byte tokens (e.g. {"".join(split[:10])}); raise vocab_size')
    tokenizer.post_processor = processors.TemplateProcessing(single='<s> $A', pair='<s> $A $B',
                                                             special_tokens=[('<s>', tokenizer.token_to_id('<s>'))])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token='<s>', eos_token='</s>', unk_token='<unk>',
                                   pad_token='</s>', additional_special_tokens=list(ADDED_SPECIAL_TOKENS + tuple(role_tokens)),
                                   model_max_length=8192, clean_up_tokenization_spaces=False)


# ---- architecture presets ----
_VIT_300M = dict(vit_hidden=1024, vit_layers=24, vit_heads=16, vit_intermediate=4096, vit_norm='layer_norm',
                 qk_normalization=False, qkv_bias=True)  # InternViT-300M-448px (InternVL2-1B..8B)
_VIT_6B = dict(vit_hidden=3200, vit_layers=45, vit_heads=25, vit_intermediate=12800, vit_norm='rms_norm',
               qk_normalization=True, qkv_bias=False)  # InternViT-6B-448px-V1-5 (InternVL2-26B)
_TOP = dict(image_size=448, patch_size=14, downsample_ratio=0.5, min_dynamic_patch=1, max_dynamic_patch=12,
            select_layer=-1)
PRESETS: Dict[str, Dict[str, Any]] = {
    'tiny': dict(vit_hidden=64, vit_layers=2, vit_heads=4, vit_intermediate=128, vit_norm='layer_norm',
                 qk_normalization=False, qkv_bias=True, llm='internlm2', llm_hidden=64, llm_layers=2, llm_heads=4,
                 llm_kv_heads=2, llm_intermediate=128, llm_bias=False, vocab_size=None, image_size=448,
                 patch_size=14, downsample_ratio=0.5, min_dynamic_patch=1, max_dynamic_patch=6, select_layer=-1),
    # The released models' dimensions (random weights, small tokenizer), for meta builds and benchmarks.
    # InternVL2-1B: InternViT-300M + Qwen2-0.5B-Instruct.
    'internvl2-1b': dict(_VIT_300M, llm='qwen2', llm_hidden=896, llm_layers=24, llm_heads=14, llm_kv_heads=2,
                         llm_intermediate=4864, llm_bias=True, vocab_size=151655, **_TOP),
    # InternVL2-2B: InternViT-300M + internlm2-chat-1_8b (2,205,754,368 parameters).
    'internvl2-2b': dict(_VIT_300M, llm='internlm2', llm_hidden=2048, llm_layers=24, llm_heads=16, llm_kv_heads=8,
                         llm_intermediate=8192, llm_bias=False, vocab_size=92553, **_TOP),
    # InternVL2-4B: InternViT-300M + Phi-3-mini-128k-instruct.
    'internvl2-4b': dict(_VIT_300M, llm='phi3', llm_hidden=3072, llm_layers=32, llm_heads=32, llm_kv_heads=32,
                         llm_intermediate=8192, llm_bias=False, vocab_size=32020, **_TOP),
    # InternVL2-8B: InternViT-300M + internlm2_5-7b-chat.
    'internvl2-8b': dict(_VIT_300M, llm='internlm2', llm_hidden=4096, llm_layers=32, llm_heads=32, llm_kv_heads=8,
                         llm_intermediate=14336, llm_bias=False, vocab_size=92553, **_TOP),
    # InternVL2-26B: InternViT-6B-448px-V1-5 + internlm2-chat-20b.
    'internvl2-26b': dict(_VIT_6B, llm='internlm2', llm_hidden=6144, llm_layers=48, llm_heads=48, llm_kv_heads=8,
                          llm_intermediate=16384, llm_bias=False, vocab_size=92553, **_TOP),
}
# Per LLM family: the official chat template and the role tokens its tokenizer must hold.
TEMPLATES = {'internlm2': 'internlm2-chat', 'qwen2': 'Hermes-2', 'phi3': 'phi3-chat'}
ROLE_TOKENS = {'internlm2': (), 'qwen2': (), 'phi3': ('<|end|>', '<|system|>', '<|user|>', '<|assistant|>')}


def _settings(preset: str, overrides: Dict[str, Any]) -> Dict[str, Any]:
    if preset not in PRESETS:
        raise ValueError(f'unknown preset {preset!r}; choose one of {sorted(PRESETS)}')
    unknown = set(overrides) - set(PRESETS[preset])
    if unknown:
        raise TypeError(f'unknown override(s) {sorted(unknown)}; allowed: {sorted(PRESETS[preset])}')
    if overrides.get('llm', 'internlm2') not in LLM_CONFIGS:
        raise ValueError(f"unknown llm {overrides['llm']!r}; choose one of {sorted(LLM_CONFIGS)}")
    return {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}


def _base_config(**fields: Any) -> Dict[str, Any]:
    """A sub-config dict with every key ``PretrainedConfig.to_dict()`` writes, like the official files."""
    config = PretrainedConfig().to_dict()
    config.update(_attn_implementation_autoset=True, transformers_version=transformers.__version__, **fields)
    return config


def _internlm2_llm_config(s: Dict[str, Any], vocab_size: int) -> Dict[str, Any]:
    return _base_config(
        architectures=['InternLM2ForCausalLM'], model_type='internlm2', attn_implementation='eager',
        auto_map={'AutoConfig': 'configuration_internlm2.InternLM2Config',
                  'AutoModel': 'modeling_internlm2.InternLM2ForCausalLM',
                  'AutoModelForCausalLM': 'modeling_internlm2.InternLM2ForCausalLM'},
        bias=s['llm_bias'], bos_token_id=1, eos_token_id=2, pad_token_id=2, hidden_act='silu',
        hidden_size=s['llm_hidden'], initializer_range=0.02, intermediate_size=s['llm_intermediate'],
        max_position_embeddings=32768, num_attention_heads=s['llm_heads'], num_hidden_layers=s['llm_layers'],
        num_key_value_heads=s['llm_kv_heads'], rms_norm_eps=1e-5, rope_scaling={'factor': 2.0, 'type': 'dynamic'},
        rope_theta=1000000, tie_word_embeddings=False, torch_dtype='bfloat16', use_cache=True,
        vocab_size=vocab_size)


def _qwen2_llm_config(s: Dict[str, Any], vocab_size: int) -> Dict[str, Any]:
    """Qwen2-0.5B-Instruct's values; q/k/v always carry a bias in Qwen2 (``llm_bias`` is not read)."""
    return _base_config(
        architectures=['Qwen2ForCausalLM'], model_type='qwen2', attn_implementation='eager', bos_token_id=1,
        eos_token_id=2, hidden_act='silu', hidden_size=s['llm_hidden'], initializer_range=0.02,
        intermediate_size=s['llm_intermediate'], max_position_embeddings=32768, max_window_layers=s['llm_layers'],
        num_attention_heads=s['llm_heads'], num_hidden_layers=s['llm_layers'], num_key_value_heads=s['llm_kv_heads'],
        rms_norm_eps=1e-6, rope_theta=1000000.0, sliding_window=32768, use_sliding_window=False,
        tie_word_embeddings=False, torch_dtype='bfloat16', use_cache=True, vocab_size=vocab_size)


def _phi3_llm_config(s: Dict[str, Any], vocab_size: int) -> Dict[str, Any]:
    """Phi-3-mini-128k-instruct's values; the ``su`` RoPE factors are placeholders of the right length."""
    half_head = s['llm_hidden'] // s['llm_heads'] // 2
    return _base_config(
        architectures=['Phi3ForCausalLM'], model_type='phi3', attn_implementation='eager', attention_dropout=0.0,
        bos_token_id=1, eos_token_id=2, pad_token_id=2, embd_pdrop=0.0, resid_pdrop=0.0, hidden_act='silu',
        hidden_size=s['llm_hidden'], initializer_range=0.02, intermediate_size=s['llm_intermediate'],
        max_position_embeddings=131072, original_max_position_embeddings=4096,
        num_attention_heads=s['llm_heads'], num_hidden_layers=s['llm_layers'], num_key_value_heads=s['llm_kv_heads'],
        rms_norm_eps=1e-5, rope_theta=10000.0, sliding_window=262144,
        rope_scaling={'type': 'su', 'short_factor': [1.0] * half_head, 'long_factor': [1.0] * half_head},
        tie_word_embeddings=False, torch_dtype='bfloat16', use_cache=True, vocab_size=vocab_size)


LLM_CONFIGS: Dict[str, Callable[[Dict[str, Any], int], Dict[str, Any]]] = {
    'internlm2': _internlm2_llm_config, 'qwen2': _qwen2_llm_config, 'phi3': _phi3_llm_config}


def official_config_dict(preset: str = 'tiny', **overrides: Any) -> Dict[str, Any]:
    """``config.json`` content, in the official layout, for a preset with overrides."""
    s = _settings(preset, overrides)
    vocab_size = s['vocab_size'] or len(build_tokenizer(ROLE_TOKENS[s['llm']]))
    vision = _base_config(
        architectures=['InternVisionModel'], model_type='intern_vit_6b', attention_dropout=0.0, drop_path_rate=0.0,
        dropout=0.0, hidden_act='gelu', hidden_size=s['vit_hidden'], image_size=s['image_size'],
        initializer_factor=1.0, initializer_range=0.02, intermediate_size=s['vit_intermediate'],
        layer_norm_eps=1e-6, norm_type=s['vit_norm'], num_attention_heads=s['vit_heads'], num_channels=3,
        num_hidden_layers=s['vit_layers'], patch_size=s['patch_size'], qk_normalization=s['qk_normalization'],
        qkv_bias=s['qkv_bias'], use_flash_attn=False, torch_dtype='bfloat16', tie_word_embeddings=True)
    llm = LLM_CONFIGS[s['llm']](s, vocab_size)
    config = {
        '_commit_hash': None, '_name_or_path': 'internvl2_' + preset.replace('-', '_'),
        'architectures': ['InternVLChatModel'],
        'auto_map': {'AutoConfig': 'configuration_internvl_chat.InternVLChatConfig',
                     'AutoModel': 'modeling_internvl_chat.InternVLChatModel',
                     'AutoModelForCausalLM': 'modeling_internvl_chat.InternVLChatModel'},
        'downsample_ratio': s['downsample_ratio'], 'dynamic_image_size': True, 'force_image_size': s['image_size'],
        'hidden_size': s['llm_hidden'], 'llm_config': llm, 'max_dynamic_patch': s['max_dynamic_patch'],
        'min_dynamic_patch': s['min_dynamic_patch'], 'model_type': 'internvl_chat', 'pad2square': False,
        'ps_version': 'v2', 'select_layer': s['select_layer'], 'template': TEMPLATES[s['llm']],
        'tie_word_embeddings': False, 'torch_dtype': 'bfloat16', 'transformers_version': None,
        'use_backbone_lora': 0, 'use_llm_lora': 0, 'use_thumbnail': True, 'vision_config': vision,
    }
    return json.loads(json.dumps(config))  # as it reads back from disk (e.g. id2label keys become strings)


def _random_tensor(name: str, shape: torch.Size, generator: torch.Generator) -> torch.Tensor:
    """Non-trivial values everywhere (norms, biases, layer scales too) so a wrong key map shows up."""
    noise = torch.randn(shape, generator=generator)
    leaf = name.rsplit('.', 1)[-1]
    if leaf in ('ls1', 'ls2') or (leaf == 'weight' and len(shape) == 1):
        return 1.0 + 0.1 * noise
    if leaf == 'bias' or name.endswith(('class_embedding', 'position_embedding')):
        return 0.02 * noise
    if 'embed_tokens' in name or 'tok_embeddings' in name:
        return noise
    fan_in = math.prod(shape[1:])
    return noise / math.sqrt(fan_in)


def random_native_state_dict(model: torch.nn.Module, seed: int, dtype: torch.dtype) -> Dict[str, torch.Tensor]:
    """Seeded values for every parameter of a (meta-device) model, one tensor at a time."""
    generator = torch.Generator().manual_seed(seed)
    tied = model._tied_native_keys()
    return {name: _random_tensor(name, param.shape, generator).to(dtype)
            for name, param in model.state_dict().items() if name not in tied}


def _apply_umask(folder: Path) -> None:
    """mkdtemp creates 0700 (and safetensors 0600) entries; give them the usual umask-based modes."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for file in folder.iterdir():
        file.chmod(0o666 & ~umask)


def make_tiny_model(out_dir: Union[str, Path], seed: int = 0, preset: str = 'tiny', overwrite: bool = False,
                    tokenizer_texts: Sequence[str] = (), tokenizer_vocab_size: int = BPE_VOCAB_SIZE,
                    **overrides: Any) -> Path:
    """Write a seeded random InternVL2 checkpoint folder; same arguments give identical files.

    ``tokenizer_texts`` / ``tokenizer_vocab_size``: see :func:`build_tokenizer` (the embedded demo
    passes the sample's jokes, so its answers are readable text).

    Written to a temporary sibling folder first and renamed into place, so ``out_dir`` is never
    half-written. Raises ``FileExistsError`` if ``out_dir`` exists and ``overwrite`` is False.
    """
    from .modeling import InternVLChatModel

    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f'{out_dir} already exists; pass overwrite=True (--overwrite) to replace it')
    family = _settings(preset, overrides)['llm']
    tokenizer = build_tokenizer(ROLE_TOKENS[family], tokenizer_texts, tokenizer_vocab_size)
    if overrides.get('vocab_size') is None and PRESETS.get(preset, {}).get('vocab_size') is None:
        overrides['vocab_size'] = len(tokenizer)
    config = InternVLChatConfig(official_config_dict(preset, **overrides), source=preset)
    with torch.device('meta'):
        model = InternVLChatModel(config)
    model.load_native_state_dict(random_native_state_dict(model, seed, torch.bfloat16), source='random init')
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{out_dir.name}.', dir=out_dir.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(str(tmp))
        _apply_umask(tmp)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


EMBEDDED_VOCAB_SIZE = 1024  # enough for every character of the sample's jokes to be one token
EMBEDDED_IMAGE_SIZE = 224  # 64 image tokens per tile instead of 256: a CPU step is ~4x shorter


def make_embedded_model(out_dir: Union[str, Path], seed: int = 0, overwrite: bool = False, **overrides: Any) -> Path:
    """The embedded default of ``make demo``: the ``tiny`` preset with a tokenizer built for the
    embedded CLoT sample (answers decode to readable characters) and 224-pixel tiles, so it learns
    the sample's jokes within a few CPU minutes."""
    from xtuner_ext.data.sample import sample_texts

    overrides.setdefault('image_size', EMBEDDED_IMAGE_SIZE)
    return make_tiny_model(out_dir, seed=seed, overwrite=overwrite, tokenizer_texts=sample_texts(),
                           tokenizer_vocab_size=EMBEDDED_VOCAB_SIZE, **overrides)
