"""``xtuner-ext``: the stock ``xtuner`` command line, with real exit codes.

``xtuner <mode> ...`` runs its tool in a ``python`` child found on ``PATH`` and
always exits 0, so scripts and CI cannot tell a failed training run from a good
one. ``xtuner-ext <mode> ...`` resolves the same modes through XTuner's own
table, runs the tool with *this* interpreter (``torchrun`` when
``NPROC_PER_NODE``/``NNODES`` ask for several processes) and returns the tool's
exit code.
"""
import importlib
import os
import random
import subprocess
import sys

# xtuner_ext's own commands: name -> 'module:function' taking argv and returning an exit code.
# They are looked up before the stock modes, and imported only when run.
OWN_COMMANDS = {
    'mmbench': 'xtuner_ext.evaluation.mmbench.cli:main',
    'web': 'xtuner_ext.web.launch:main',
    'convert-official': 'xtuner_ext.convert.convert_cli:main',
    'convert': 'xtuner_ext.convert.convert_cli:convert_command',
    'chat': 'xtuner_ext.chat_cli:main',
    'internlm2': 'xtuner_ext.models.internlm2.cli:main',
    'llava': 'xtuner_ext.models.llava.cli:main',
}


def _usage(text: str):
    print(f'usage: {text}', file=sys.stderr)
    raise SystemExit(2)


def tool_command(args: list[str]) -> list[str] | None:
    """The child command for ``xtuner <args>``; None when the mode only prints its help."""
    from xtuner.entry_point import HELP_FUNCS, modes

    if not args or args[0].lower() not in modes:
        _usage(f'xtuner-ext MODE [ARGS...]  (MODE: {", ".join(sorted(modes))})')
    entry, n_mode_words = modes[args[0].lower()], 1
    if isinstance(entry, dict):
        sub = args[1].lower() if len(args) > 1 else ''
        if sub not in entry:
            _usage(f'xtuner-ext {args[0]} {{{",".join(sorted(entry))}}} [ARGS...]')
        entry, n_mode_words = entry[sub], 2
    if entry in HELP_FUNCS:
        entry()
        return None
    tool, rest = entry(), args[n_mode_words:]
    nnodes = int(os.environ.get('NNODES', 1))
    nproc = int(os.environ.get('NPROC_PER_NODE', 1))
    slurm = '--launcher' in rest and rest[rest.index('--launcher') + 1:][:1] == ['slurm']
    if nnodes == 1 and nproc == 1 or slurm:  # as stock xtuner decides
        return [sys.executable, tool, *rest]
    return [sys.executable, '-m', 'torch.distributed.run',
            f'--nnodes={nnodes}', f'--node_rank={os.environ.get("NODE_RANK", 0)}',
            f'--nproc_per_node={nproc}', f'--master_addr={os.environ.get("ADDR", "127.0.0.1")}',
            f'--master_port={os.environ.get("PORT", random.randint(20000, 29999))}',
            tool, *rest, '--launcher', 'pytorch']


def run_own_command(args: list[str]) -> int:
    module, _, function = OWN_COMMANDS[args[0]].partition(':')
    return int(getattr(importlib.import_module(module), function)(args[1:]) or 0)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in OWN_COMMANDS:
        return run_own_command(args)
    command = tool_command(args)
    if command is None:
        return 0
    code = subprocess.run(command).returncode
    return 128 - code if code < 0 else code  # killed by signal N: the shell's 128 + N


if __name__ == '__main__':
    sys.exit(main())
