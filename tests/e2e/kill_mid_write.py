"""A checkpoint file backend for the kill-during-save test, imported by the run's config
(``custom_imports``): it writes checkpoints the way ``atomic_local`` does, except the one named in
``$KILL_DURING_WRITE_OF``, where it leaves what a ``kill -9`` in the middle of ``write_atomically`` leaves
(half the bytes under the temporary name) and then kills its own process with SIGKILL."""
import os
import signal

from mmengine.fileio import LocalBackend, register_backend

from xtuner_ext.fileio import temp_name, write_atomically


@register_backend('kill_mid_write', force=True)
class KillMidWriteBackend(LocalBackend):
    def put(self, obj: bytes, filepath) -> None:
        filepath = str(filepath)
        if os.path.basename(filepath) != os.environ.get('KILL_DURING_WRITE_OF'):
            return write_atomically(filepath, obj)
        with open(temp_name(filepath, os.getpid()), 'wb') as f:
            f.write(obj[:len(obj) // 2])
        os.kill(os.getpid(), signal.SIGKILL)
