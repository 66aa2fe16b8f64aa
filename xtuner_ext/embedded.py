"""The embedded default: the tiny model and sample data the shipped configs fall back to when no
environment variable names others, and what to tell a user who does not have them.

The configs read ``{{$XTUNER_EXT_MODEL_PATH:embedded/internvl2_tiny}}`` and
``{{$XTUNER_EXT_DATA_ROOT:embedded/CLoT_sample}}``: relative paths, so they exist only in a
repository root where ``make demo`` (or the two tools below) has made them.
"""
import os
from typing import NamedTuple, Union


class Default(NamedTuple):
    path: str  # as the configs spell it, relative to the folder `xtuner train` runs in
    variable: str  # the environment variable that replaces it
    what: str
    make: str  # the command that makes it, from the repository root


DEFAULTS = (
    Default('embedded/internvl2_tiny', 'XTUNER_EXT_MODEL_PATH', 'an InternVL2 folder',
            'python tools/make_tiny_model.py embedded/internvl2_tiny'),
    Default('embedded/CLoT_sample', 'XTUNER_EXT_DATA_ROOT', 'a CLoT_cn_2000-style data folder',
            'python tools/make_sample_data.py embedded/CLoT_sample'),
)


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip('/') + '/')


def missing_path_hint(path: Union[str, os.PathLike]) -> str:
    """What to do about a model or data ``path`` that does not exist, as a sentence to append to the
    error; '' when the path is neither an embedded default nor taken from one of the variables."""
    path = os.fspath(path)
    for default in DEFAULTS:
        if _under(path, default.path):
            return (f' {default.path} is the embedded default of the shipped configs, relative to the folder you '
                    f'run in ({os.getcwd()}): run `make demo` once in the repository root (or `{default.make}`) and '
                    f'run from there, or set {default.variable} to {default.what}.')
        value = os.environ.get(default.variable)
        if value and _under(path, value):
            return f' It comes from {default.variable}={value}: point it at {default.what}.'
    return ''
