"""``xtuner-ext``: the stock ``xtuner`` command line, with real exit codes.

``xtuner <mode> ...`` runs its tool in a ``python`` child found on ``PATH`` and
always exits 0, so scripts and CI cannot tell a failed training run from a good
one. ``xtuner-ext <mode> ...`` resolves the same modes through XTuner's own
table, runs the tool with *this* interpreter (``torchrun`` when
``NPROC_PER_NODE``/``NNODES`` ask for several processes) and returns the tool's
exit code.
"""
import os
import random
import subprocess
import sys


def tool_command(args: list[str]) -> list[str]:
    """The child command for ``xtuner <args>``; raises ``SystemExit(2)`` on a bad mode."""
    from xtuner.entry_point import modes

    if not args or args[0].lower() not in modes:
        raise SystemExit(f'usage: xtuner-ext MODE [ARGS...]  (MODE: {", ".join(sorted(modes))})')
    entry, n_mode_words = modes[args[0].lower()], 1
    if isinstance(entry, dict):
        sub = args[1].lower() if len(args) > 1 else ''
        if sub not in entry:
            raise SystemExit(f'usage: xtuner-ext {args[0]} {{{",".join(sorted(entry))}}} [ARGS...]')
        entry, n_mode_words = entry[sub], 2
    tool, rest = entry(), args[n_mode_words:]
    nnodes = int(os.environ.get('NNODES', 1))
    nproc = int(os.environ.get('NPROC_PER_NODE', 1))
    if nnodes == 1 and nproc == 1 or '--launcher' in rest:
        return [sys.executable, tool, *rest]
    return [sys.executable, '-m', 'torch.distributed.run',
            f'--nnodes={nnodes}', f'--node_rank={os.environ.get("NODE_RANK", 0)}',
            f'--nproc_per_node={nproc}', f'--master_addr={os.environ.get("ADDR", "127.0.0.1")}',
            f'--master_port={os.environ.get("PORT", random.randint(20000, 29999))}',
            tool, *rest, '--launcher', 'pytorch']


def main(argv: list[str] | None = None) -> int:
    command = tool_command(list(sys.argv[1:] if argv is None else argv))
    return subprocess.run(command).returncode


if __name__ == '__main__':
    sys.exit(main())
