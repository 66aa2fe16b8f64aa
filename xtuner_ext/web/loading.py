"""Model folders -> chat-ready models, or a message a user can act on.

A folder is an InternVL2 checkpoint in the official layout (a download, or a converted
fine-tune): :meth:`InternVLChatModel.from_pretrained` reads the weights and
:meth:`InternVL2Processor.from_pretrained` the tokenizer, template and tiling, so the page sends
exactly the prompts and pixels that ``chat()`` does.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import pickle

import torch
from safetensors import SafetensorError

from xtuner_ext.models.internvl2 import InternVL2Processor, InternVLChatModel

FOLDER_HINT = ('give an InternVL2 folder in the official layout (config.json, model.safetensors or a sharded index, '
               'tokenizer files): a downloaded model, or a fine-tune converted to that layout')
# What reading a broken folder raises: unreadable/missing files, bad JSON, keys or shapes that do not
# match config.json, a truncated safetensors file.
LOAD_ERRORS = (OSError, ValueError, KeyError, SafetensorError)
# ... and what torch.load raises on a file that is not a checkpoint.
CHECKPOINT_ERRORS = LOAD_ERRORS + (RuntimeError, pickle.UnpicklingError)
TRAINED_HINT = ('give the training config and an iter_N.pth it wrote (e.g. configs/internvl/internvl2_tiny_qlora.py '
                'and work_dirs/demo/iter_100.pth after `make demo`), run from the folder `xtuner train` ran in')


class ModelFolderError(Exception):
    """A model folder that cannot be served; the message names the folder and the fix."""


@dataclass
class ChatModel:
    """A loaded model and the processor that builds its prompts and pixels."""

    model: InternVLChatModel
    processor: InternVL2Processor

    @property
    def needs_image(self) -> bool:
        """InternVL2 answers questions about a picture; text-only models (later) do not need one."""
        return True

    def pixel_values(self, image_path: Union[str, Path]) -> torch.Tensor:
        """Tiles as the processor cuts them, in the vision tower's dtype (the LLM may be 4-bit)."""
        vision_dtype = self.model.vision_model.embeddings.patch_embedding.weight.dtype
        return self.processor.pixel_values(image_path).to(self.model.device, vision_dtype)


@dataclass
class ModelSlot:
    """One column of the page: its label, where the model came from, and the model or why not."""

    label: str
    source: str
    chat_model: Optional[ChatModel] = None
    error: Optional[str] = None

    @property
    def ready(self) -> bool:
        return self.chat_model is not None


def load_chat_model(folder: Union[str, Path], torch_dtype: Optional[str] = None, device: str = 'cpu') -> ChatModel:
    """Load an official-layout InternVL2 folder; raise :class:`ModelFolderError` when it cannot be."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelFolderError(f'model folder {folder} does not exist; {FOLDER_HINT}')
    if not (folder / 'config.json').is_file():
        raise ModelFolderError(f'model folder {folder} has no config.json; {FOLDER_HINT}')
    try:
        model = InternVLChatModel.from_pretrained(folder, torch_dtype=torch_dtype, device=device)
        processor = InternVL2Processor.from_pretrained(folder)
    except LOAD_ERRORS as exc:
        raise ModelFolderError(f'model folder {folder} cannot be loaded ({type(exc).__name__}: {exc}); '
                               f'{FOLDER_HINT}') from exc
    return ChatModel(model, processor)


def load_slot(label: str, folder: Union[str, Path], torch_dtype: Optional[str] = None,
              device: str = 'cpu') -> ModelSlot:
    """A page column for ``folder``: the model, or the reason it could not be loaded (shown in the page)."""
    try:
        return ModelSlot(label, str(folder), chat_model=load_chat_model(folder, torch_dtype, device))
    except ModelFolderError as exc:
        return ModelSlot(label, str(folder), error=str(exc))


def load_trained_model(config: Union[str, Path], checkpoint: Union[str, Path]) -> ChatModel:
    """The fine-tune as training left it: the config's ``InternVL2QLoRA`` (base folder, 4-bit LLM,
    LoRA, processor settings) with ``checkpoint``'s trainable weights, loaded strictly."""
    for path, what in ((config, 'training config'), (checkpoint, 'checkpoint')):
        if not Path(path).is_file():
            raise ModelFolderError(f'{what} {path} does not exist; {TRAINED_HINT}')
    import xtuner_ext  # noqa: F401  (registers the classes configs name)
    from mmengine.config import Config
    from mmengine.registry import MODELS

    try:
        cfg = Config.fromfile(str(config))
        cfg.model.pretrained_pth = str(checkpoint)
        trained = MODELS.build(cfg.model).eval()
    except CHECKPOINT_ERRORS as exc:
        raise ModelFolderError(f'{checkpoint} with {config} cannot be loaded ({type(exc).__name__}: {exc}); '
                               f'{TRAINED_HINT}') from exc
    return ChatModel(trained.model, trained.processor)


def load_trained_slot(label: str, config: Union[str, Path], checkpoint: Union[str, Path]) -> ModelSlot:
    source = f'{checkpoint} ({config})'
    try:
        return ModelSlot(label, source, chat_model=load_trained_model(config, checkpoint))
    except ModelFolderError as exc:
        return ModelSlot(label, source, error=str(exc))


def default_device() -> str:
    return 'cuda' if torch.cuda.is_available() else 'cpu'


__all__ = ['ChatModel', 'ModelSlot', 'ModelFolderError', 'load_chat_model', 'load_slot', 'load_trained_model',
           'load_trained_slot', 'default_device']
