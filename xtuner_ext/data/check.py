"""Preflight data check (the code behind ``tools/check_data.py``).

    python tools/check_data.py CONFIG
    python tools/check_data.py --data FILE_OR_FOLDER --image-folder DIR [--model DIR] [--max-length N]

Prints counts by task type, tiles and token budget against max_length, every problem record as
``file:index: code: reason``, and a final ``checked N records: U usable, B with problems`` line.
Exit status: 0 all records usable, 1 some records have problems, 2 usage or file error.
"""

from __future__ import annotations

import argparse
import os
import sys

from .loaders import load_any
from .records import DataFormatError
from .validate import validate_records

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad arguments or an unusable config/model/data file: exit status 2."""


def settings_from_config(config_path: str) -> dict:
    """Read ``data_path``, ``image_folder``, the model path and ``max_length`` from an mmengine config.

    Only plain values are read (configs are lazy-import files; nothing is built). The model path is
    ``path`` or ``model_path``. Missing keys come back as None.
    """
    if not os.path.isfile(config_path):
        raise UsageError(f"config file not found: {config_path}")
    from mmengine.config import Config

    try:
        cfg = Config.fromfile(config_path)
    except Exception as err:  # mmengine raises many kinds (SyntaxError, ImportError, ...); all are usage errors here
        raise UsageError(f"cannot read config {config_path}: {type(err).__name__}: {err}") from err

    def plain(key):
        value = cfg.get(key, None)
        return value if isinstance(value, (str, int, float, list, tuple)) or value is None else None

    return {
        "data": plain("data_path"),
        "image_folder": plain("image_folder"),
        "model": plain("path") or plain("model_path"),
        "max_length": plain("max_length"),
        "max_dynamic_patch": plain("max_dynamic_patch"),
    }


def _pairs(data, image_folder) -> list[tuple[str, str | None]]:
    datas = list(data) if isinstance(data, (list, tuple)) else [data]
    folders = list(image_folder) if isinstance(image_folder, (list, tuple)) else [image_folder] * len(datas)
    if len(folders) != len(datas):
        raise UsageError(f"{len(datas)} data paths but {len(folders)} image folders; give one folder per file")
    return list(zip(datas, folders))


def _missing_data_hint(data: str) -> str:
    if os.path.basename(data) == "ex_cn.json":
        up = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(data))), "ex_cn.json")
        if os.path.isfile(up):
            folder = os.path.dirname(up)
            return (f"; found {up} one folder up (the tutorial's `cp -r` can put it there): "
                    f"set data_root = '{folder}/' (data_path and image_folder follow)")
    return ""


def _load_budget(model: str | None, max_length, max_dynamic_patch=None):
    if model is None:
        if max_length is not None:
            print("note: max_length given but no model folder (--model, or `path` in the config); "
                  "tiles and token budget not checked")
        return None
    from .budget import TokenBudget

    try:
        return TokenBudget.from_model_dir(model, max_dynamic_patch)
    except (OSError, ValueError, ImportError) as err:
        raise UsageError(f"cannot load the model folder {model} for the token budget: {err}") from err


def run_check(data, image_folder, model=None, max_length=None, data_format="auto", per_sample=None, out=None,
              max_dynamic_patch=None) -> int:
    out = out or sys.stdout
    budget = _load_budget(model, max_length, max_dynamic_patch)
    status = EXIT_OK
    for data_path, folder in _pairs(data, image_folder):
        if not os.path.exists(data_path):
            raise UsageError(f"data not found: {data_path}{_missing_data_hint(data_path)}")
        try:
            loaded = load_any(data_path, folder, data_format)
        except DataFormatError as err:
            raise UsageError(str(err)) from err
        if loaded.image_folder and not os.path.isdir(loaded.image_folder):
            print(f"warning: image folder {loaded.image_folder} does not exist", file=out)
        report = validate_records(loaded.records, loaded.image_folder, max_length=max_length, budget=budget,
                                  source=loaded.source, load_problems=loaded.problems)
        print(f"image folder: {loaded.image_folder}", file=out)
        show_table = per_sample if per_sample is not None else report.n_records <= 60
        if report.n_records == 0:
            print(f"error: {loaded.source} has no records; training needs at least one", file=out)
        print(report.format(per_sample=show_table), file=out)
        if not report.ok or report.n_records == 0:
            status = EXIT_PROBLEMS
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/check_data.py", description="Preflight check of training data.",
                                     epilog="exit status: 0 all usable, 1 problems found, 2 usage or file error")
    parser.add_argument("config", nargs="?", help="an xtuner/mmengine config with data_path, image_folder, path, max_length")
    parser.add_argument("--data", help="CLoT folder, ex_cn.json, Oogiri-GO jsonl, or conversation json/jsonl")
    parser.add_argument("--image-folder", help="folder the records' image paths are relative to")
    parser.add_argument("--model", help="InternVL2 model folder (config.json + tokenizer) for tiles and token budget")
    parser.add_argument("--max-length", type=int, help="training max_length to check the token budget against")
    parser.add_argument("--max-dynamic-patch", type=int, help="tile limit used in training (default: the config's, "
                        "else the model's)")
    parser.add_argument("--format", default="auto", choices=["auto", "clot", "oogiri", "conversations"])
    table = parser.add_mutually_exclusive_group()
    table.add_argument("--per-sample", dest="per_sample", action="store_true", default=None,
                       help="print the per-sample tiles/token table (default: only for <= 60 records)")
    table.add_argument("--no-per-sample", dest="per_sample", action="store_false")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return EXIT_USAGE if exit_.code else EXIT_OK
    try:
        settings = {"data": None, "image_folder": None, "model": None, "max_length": None, "max_dynamic_patch": None}
        if args.config:
            settings = settings_from_config(args.config)
        for key in settings:
            if getattr(args, key) is not None:
                settings[key] = getattr(args, key)
        if settings["data"] is None:
            where = f"config {args.config} has no `data_path`; " if args.config else ""
            raise UsageError(f"{where}give a CONFIG or --data FILE")
        return run_check(settings["data"], settings["image_folder"], settings["model"], settings["max_length"],
                         args.format, args.per_sample, max_dynamic_patch=settings["max_dynamic_patch"])
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
