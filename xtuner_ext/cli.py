"""``xtuner-ext``: the stock ``xtuner`` command line, run by this interpreter, with real exit codes.

``xtuner <mode> ...`` runs its tool in a ``python`` child found on ``PATH`` (its exit code is passed on
once ``xtuner_ext`` is installed: see ``boot.py``). ``xtuner-ext <mode> ...`` resolves the same modes
through XTuner's own table, runs the tool with *this* interpreter (``torchrun`` when
``NPROC_PER_NODE``/``NNODES`` ask for several processes) and returns the tool's exit code.

The mode table is read from the source of ``xtuner/entry_point.py`` instead of importing it: the
import loads mmengine and torch, seconds before even a usage line could be printed.
"""
import ast
import importlib
import importlib.util
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple


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


class Tool(NamedTuple):
    """One entry of XTuner's mode table: the module whose file is the tool (None for a function that only
    prints help), and the name of the entry-point function."""
    module: str | None
    function: str


def _usage(text: str):
    print(f'usage: {text}', file=sys.stderr)
    raise SystemExit(2)


def _entry_point_source() -> Path:
    spec = importlib.util.find_spec('xtuner')  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit('xtuner-ext: XTuner is not installed in this environment (pip install xtuner==0.2.0)')
    return Path(spec.submodule_search_locations[0]) / 'entry_point.py'


def _imported_module(function: ast.FunctionDef) -> str | None:
    """``from xtuner.tools import train`` in an entry-point function -> ``'xtuner.tools.train'``."""
    for node in ast.walk(function):
        if isinstance(node, ast.ImportFrom) and node.module:
            return f'{node.module}.{node.names[0].name}'
    return None


def _table(node: ast.Dict, tools: dict) -> dict:
    table = {}
    for key, value in zip(node.keys, node.values):
        table[ast.literal_eval(key)] = _table(value, tools) if isinstance(value, ast.Dict) else tools[value.id]
    return table


def stock_modes() -> dict:
    """XTuner's ``modes`` table as ``{mode: Tool | {sub_mode: Tool}}``, read without importing XTuner."""
    source = _entry_point_source()
    tree = ast.parse(source.read_text(encoding='utf-8'))
    tools = {node.name: Tool(_imported_module(node), node.name) for node in tree.body
             if isinstance(node, ast.FunctionDef)}
    for node in tree.body:
        if isinstance(node, ast.Assign) and [getattr(t, 'id', None) for t in node.targets] == ['modes']:
            return _table(node.value, tools)
    raise SystemExit(f'xtuner-ext: no `modes` table in {source}: this XTuner is not the 0.2.0 that xtuner_ext supports')


def tool_file(module: str) -> str:
    """The file of a tool module, found without importing the module (or XTuner) when it is a plain file."""
    package, *rest = module.split('.')
    candidate = Path(_entry_point_source()).parent.joinpath(*rest).with_suffix('.py')
    if package == 'xtuner' and candidate.is_file():
        return str(candidate)
    return importlib.import_module(module).__file__


def _resolve(args: list[str]) -> tuple[Tool, list[str]]:
    modes = stock_modes()
    if not args or args[0].lower() not in modes:
        _usage(f'xtuner-ext MODE [ARGS...]  (MODE: {", ".join(sorted(set(modes) | set(OWN_COMMANDS)))})')
    entry, rest = modes[args[0].lower()], args[1:]
    if isinstance(entry, dict):
        sub = rest[0].lower() if rest else ''
        if sub not in entry:
            _usage(f'xtuner-ext {args[0]} {{{",".join(sorted(entry))}}} [ARGS...]')
        entry, rest = entry[sub], rest[1:]
    return entry, rest


def tool_command(args: list[str]) -> list[str] | None:
    """The child command for ``xtuner <args>``; None when the mode only prints its help."""
    entry, rest = _resolve(args)
    if entry.module is None:
        getattr(importlib.import_module('xtuner.entry_point'), entry.function)()
        return None
    tool = tool_file(entry.module)
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
