"""Loading mmengine checkpoints under torch's ``weights_only`` unpickler: the allow-list."""


def mmengine_checkpoint_globals() -> list:
    """The classes mmengine pickles into a checkpoint's ``meta`` (message hub):
    ``HistoryBuffer`` with numpy arrays, and its statistics methods, which pickle
    as ``getattr(HistoryBuffer, 'mean')``."""
    import numpy as np
    from mmengine.logging import HistoryBuffer
    return [HistoryBuffer, getattr, np.ndarray, np.dtype, np._core.multiarray._reconstruct,
            np._core.multiarray.scalar, *{type(np.dtype(t)) for t in np.typecodes['All']}]
