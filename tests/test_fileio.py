"""Atomic writes and the clean-up of what a killed writer leaves."""
import os
import signal
import subprocess
import sys

from xtuner_ext.fileio import remove_orphaned_temp_files, temp_name, write_atomically


def dead_pid() -> int:
    """The PID of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, '-c', 'pass'])
    child.wait()
    return child.pid


def test_write_atomically_leaves_only_the_file(tmp_path):
    write_atomically(tmp_path / 'iter_1.pth', b'data')
    assert [p.name for p in tmp_path.iterdir()] == ['iter_1.pth']


def test_killed_writer_leaves_a_temp_file_that_the_next_start_removes(tmp_path):
    # a writer killed with SIGKILL between open() and rename: its `finally` never runs
    code = ('import os, signal, sys\n'
            'from xtuner_ext.fileio import temp_name\n'
            f'open(temp_name({str(tmp_path / "iter_20.pth")!r}, os.getpid()), "wb").write(b"half")\n'
            'os.kill(os.getpid(), signal.SIGKILL)\n')
    killed = subprocess.run([sys.executable, '-c', code])
    assert killed.returncode == -signal.SIGKILL
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith('.iter_20.pth.tmp-')
    assert remove_orphaned_temp_files(tmp_path) == left
    assert list(tmp_path.iterdir()) == []


def test_only_our_dead_temp_files_directly_in_the_folder_are_removed(tmp_path):
    dead = dead_pid()
    orphan = temp_name(str(tmp_path / 'iter_10.pth'), dead)
    live = temp_name(str(tmp_path / 'iter_20.pth'), os.getpid())  # a writer still at work
    keep = [live, str(tmp_path / 'iter_10.pth'), str(tmp_path / '.notes.tmp-abc'), str(tmp_path / 'x.tmp-1')]
    nested = tmp_path / 'sub'
    nested.mkdir()
    keep.append(temp_name(str(nested / 'iter_5.pth'), dead))  # not in the folder itself
    for path in [orphan, *keep]:
        open(path, 'wb').close()
    folder_named_like_one = tmp_path / f'.data.tmp-{dead}'
    folder_named_like_one.mkdir()
    assert remove_orphaned_temp_files(tmp_path) == [os.path.basename(orphan)]
    assert all(os.path.exists(path) for path in keep) and folder_named_like_one.is_dir()


def test_missing_folder_is_nothing_to_clean(tmp_path):
    assert remove_orphaned_temp_files(tmp_path / 'not_yet') == []
