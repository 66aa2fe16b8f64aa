"""Writing files so that a reader, or a killed writer, never sees half of one; and clearing what a
killed writer leaves behind."""
import os
import re

# ``.NAME.tmp-PID``: the temporary file ``write_atomically`` renames into place
TEMP_NAME = re.compile(r'\.(?P<name>.+)\.tmp-(?P<pid>\d+)')


def temp_name(path, pid: int) -> str:
    return os.path.join(os.path.dirname(path) or '.', f'.{os.path.basename(path)}.tmp-{pid}')


def write_atomically(path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, then rename it into place: a reader (or a
    killed writer) sees the old file or the whole new one, never half of one."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    tmp = temp_name(path, os.getpid())
    try:
        with open(tmp, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    except OverflowError:  # not a possible PID
        return False
    return True


def remove_orphaned_temp_files(folder) -> list:
    """Remove the temporary files of ``write_atomically`` calls whose process was killed mid-write
    (``kill -9``: its ``finally`` never ran). Only that name pattern, only plain files directly in
    ``folder``, only when no process with that PID is alive. Returns the names removed."""
    if not os.path.isdir(folder):
        return []
    removed = []
    for entry in os.scandir(folder):
        match = TEMP_NAME.fullmatch(entry.name)
        if match and entry.is_file(follow_symlinks=False) and not process_alive(int(match.group('pid'))):
            os.remove(entry.path)
            removed.append(entry.name)
    return sorted(removed)


class AtomicTextFile:
    """``open(path, 'w')`` whose text reaches ``path`` in one rename when the ``with`` block ends (and not at
    all if the block raises): for small files that code outside xtuner_ext writes with a plain ``open``."""

    def __init__(self, path, encoding: str = 'utf-8'):
        self.path, self.encoding, self._parts = os.fspath(path), encoding, []

    def write(self, text: str) -> int:
        self._parts.append(text)
        return len(text)

    def __enter__(self):
        return self

    def __exit__(self, error_type, *_) -> None:
        if error_type is None:
            write_atomically(self.path, ''.join(self._parts).encode(self.encoding))


def open_writes_atomically(file, mode: str = 'r', *args, **kwargs):
    """A drop-in ``open`` for a module's namespace: text writes (``'w'``) go through ``AtomicTextFile``,
    everything else is the builtin ``open``."""
    if mode == 'w':
        return AtomicTextFile(file, kwargs.get('encoding') or 'utf-8')
    return open(file, mode, *args, **kwargs)
