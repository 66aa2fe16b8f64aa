"""Imported by the multi-rank runs' config (``custom_imports``), before a rank joins its process group: an exit
handler registered this early runs after every later one, so what it prints is what interpreter shutdown meets.
gloo worker threads still running then can abort a rank that has finished (``xtuner_ext.distributed``)."""
import atexit
import os
import sys


def gloo_workers() -> int:
    tasks = f'/proc/{os.getpid()}/task'
    return sum(open(f'{tasks}/{t}/comm').read().strip() == 'pt_gloo_runloop' for t in os.listdir(tasks))


atexit.register(lambda: print(f'gloo workers left at exit: {gloo_workers()}', file=sys.stderr, flush=True))
