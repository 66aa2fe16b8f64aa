"""Native InternVL2 (InternViT + InternLM2/Qwen2/Llama/Phi-3) reading and writing the official layout."""
from .checkpoint import fuse_wqkv, native_state_dict_from_official, official_state_dict, split_wqkv
from .configuration import InternVLChatConfig, VisionConfig
from .conversation import (IMG_CONTEXT_TOKEN, IMG_END_TOKEN, IMG_START_TOKEN, IMAGE_PLACEHOLDER,
                           INTERNVL_SYSTEM_MESSAGE, ChatTemplate, build_chat_prompt, get_template)
from .encoding import IGNORE_INDEX, EncodedSample, SampleTooLongError
from .image_processing import (IMAGENET_MEAN, IMAGENET_STD, TilingSpec, build_transform, dynamic_preprocess,
                               load_image, num_tiles_for_size)
from .modeling import InternVLChatModel
from .processing import InternVL2Processor, TokenCount
from .tokenizer import load_tokenizer, require_image_tokens

__all__ = [
    'InternVL2Processor', 'TilingSpec', 'TokenCount', 'EncodedSample', 'SampleTooLongError', 'IGNORE_INDEX',
    'InternVLChatModel', 'InternVLChatConfig', 'VisionConfig', 'load_tokenizer', 'require_image_tokens',
    'load_image', 'dynamic_preprocess', 'build_transform', 'num_tiles_for_size', 'IMAGENET_MEAN', 'IMAGENET_STD',
    'build_chat_prompt', 'get_template', 'ChatTemplate', 'INTERNVL_SYSTEM_MESSAGE', 'IMG_START_TOKEN',
    'IMG_END_TOKEN', 'IMG_CONTEXT_TOKEN', 'IMAGE_PLACEHOLDER', 'official_state_dict',
    'native_state_dict_from_official', 'split_wqkv', 'fuse_wqkv', 'make_tiny_model',
]


def __getattr__(name):
    # make_tiny_model pulls in the tokenizer trainer; import it only when asked for.
    if name == 'make_tiny_model':
        from .tiny import make_tiny_model
        return make_tiny_model
    raise AttributeError(name)
