"""LLaVA (CLIP + MLP projector + native InternLM2) on stock XTuner's ``LLaVAModel``: builders, chat, export."""
from .clip import build_clip_vision, clip_image_processor, make_tiny_clip

__all__ = ['build_clip_vision', 'clip_image_processor', 'make_tiny_clip']
