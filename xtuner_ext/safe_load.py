"""Loading mmengine checkpoints: the allow-list for torch's ``weights_only`` unpickler, and an error
that names a checkpoint file which is not complete (instead of torch's ``EOFError`` or zip error)."""
import contextlib
import os
import re
import zipfile

TORCH_LEGACY_MAGIC = b'\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19'  # files saved before torch's zip format


class CorruptCheckpointError(ValueError):
    """A checkpoint file that is empty, truncated or not a checkpoint at all."""


def mmengine_checkpoint_globals() -> list:
    """The classes mmengine pickles into a checkpoint's ``meta`` (message hub):
    ``HistoryBuffer`` with numpy arrays, and its statistics methods, which pickle
    as ``getattr(HistoryBuffer, 'mean')``; and in a DeepSpeed folder's model states, the
    DeepSpeed config mmengine passed as a ``ConfigDict`` (a plain dict subclass)."""
    import numpy as np
    from mmengine.config import ConfigDict
    from mmengine.logging import HistoryBuffer
    return [HistoryBuffer, ConfigDict, getattr, np.ndarray, np.dtype, np._core.multiarray._reconstruct,
            np._core.multiarray.scalar, *{type(np.dtype(t)) for t in np.typecodes['All']}]


def incomplete_reason(path) -> str:
    """Why ``path`` cannot be a complete torch checkpoint ('' when it may be one)."""
    with open(path, 'rb') as f:
        head = f.read(len(TORCH_LEGACY_MAGIC))
    if not head:
        return 'the file is empty'
    if head.startswith(TORCH_LEGACY_MAGIC[:len(head)]) and len(head) == len(TORCH_LEGACY_MAGIC):
        return ''  # the legacy format has no directory to check
    if not zipfile.is_zipfile(path):
        return 'not a zip archive, which torch checkpoints are: truncated, or not a checkpoint'
    try:
        with zipfile.ZipFile(path) as archive:
            broken = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        return f'its zip archive is damaged ({err})'
    return f'{broken} in its zip archive is damaged' if broken else ''


def _iteration(name: str) -> int:
    match = re.fullmatch(r'iter_(\d+)\.pth', name)
    return int(match.group(1)) if match else -1


def other_checkpoints(path) -> list:
    """The other ``iter_N.pth`` beside ``path``, in iteration order."""
    folder, name = os.path.split(os.path.abspath(path))
    return sorted((n for n in os.listdir(folder) if _iteration(n) >= 0 and n != name), key=_iteration)


def corrupt_checkpoint_error(path, reason: str) -> CorruptCheckpointError:
    others = other_checkpoints(path)
    remedy = (f'load an earlier one from the same folder ({", ".join(others[-3:])})' if others
              else 'train from the start or load another checkpoint')
    return CorruptCheckpointError(f'{path} is truncated or corrupt ({os.path.getsize(path)} bytes; {reason}): it is '
                                  f'not a complete checkpoint (a copy or write that stopped early?); {remedy}, and '
                                  'delete this file')


@contextlib.contextmanager
def naming_corrupt_checkpoint(path):
    """Turn the error torch gives for an incomplete checkpoint file into one that names the file, says what is
    wrong with it and what to do; every other error is left as it is."""
    try:
        yield
    except Exception as err:
        path = os.fspath(path) if path is not None else None
        reason = incomplete_reason(path) if path and os.path.isfile(path) else ''
        if reason:
            raise corrupt_checkpoint_error(path, reason) from err
        raise
