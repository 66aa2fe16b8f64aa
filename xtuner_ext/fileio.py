"""Writing files so that a reader, or a killed writer, never sees half of one."""
import os


def write_atomically(path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, then rename it into place: a reader (or a
    killed writer) sees the old file or the whole new one, never half of one."""
    path = os.fspath(path)
    folder = os.path.dirname(path) or '.'
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f'.{os.path.basename(path)}.tmp-{os.getpid()}')
    try:
        with open(tmp, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
