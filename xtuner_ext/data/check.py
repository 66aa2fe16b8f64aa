"""Preflight data check (the code behind ``tools/check_data.py``).

    python tools/check_data.py CONFIG
    python tools/check_data.py --data FILE_OR_FOLDER --image-folder DIR [--model DIR] [--max-length N]
        [--max-dynamic-patch N] [--min-dynamic-patch N] [--[no-]dynamic-image-size] [--[no-]use-thumbnail]

With a model folder, tiles and tokens are counted by the model's processor (the object training
encodes with), so the preflight count is the training count. The tiling options are the
processor overrides a config gives its dataset (``processor=dict(max_dynamic_patch=6)``).

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


TILING_KEYS = ("dynamic_image_size", "min_dynamic_patch", "max_dynamic_patch", "use_thumbnail")


def settings_from_config(config_path: str) -> dict:
    """What the config's training dataset reads: data, image folder, model path, ``max_length`` and
    the processor overrides (``train_dataloader.dataset``, else the top-level variables).

    Nothing is built. The model path is ``model_path`` (or ``path``). Missing keys come back as None.
    """
    if not os.path.isfile(config_path):
        raise UsageError(f"config file not found: {config_path}")
    from mmengine.config import Config

    try:
        cfg = Config.fromfile(config_path)
    except Exception as err:  # mmengine raises many kinds (SyntaxError, ImportError, ...); all are usage errors here
        raise UsageError(f"cannot read config {config_path}: {type(err).__name__}: {err}") from err
    dataset = cfg.get("train_dataloader", {}).get("dataset", {}) or {}

    def plain(key, *aliases):
        for name in (key, *aliases):
            value = dataset.get(name, cfg.get(name, None))
            if isinstance(value, (str, int, float, list, tuple)):
                return value
        return None

    processor = dict(dataset.get("processor", None) or cfg.get("processor", None) or {})
    settings = {"data": plain("data_path"), "image_folder": plain("image_folder"),
                "model": plain("model_path", "path"), "max_length": plain("max_length")}
    settings.update({key: processor.get(key) for key in TILING_KEYS})
    return settings


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


def _load_budget(model: str | None, max_length, tiling: dict | None = None):
    """The model's processor, which counts tiles and tokens exactly as training encodes them."""
    if model is None:
        if max_length is not None:
            print("note: max_length given but no model folder (--model, or `model_path` in the config); "
                  "tiles and token budget not checked")
        return None
    from xtuner_ext.models.internvl2 import InternVL2Processor  # the CLI glue: data/ itself stays model-agnostic

    try:
        return InternVL2Processor.from_pretrained(model, **(tiling or {}))
    except (OSError, ValueError, ImportError) as err:
        raise UsageError(f"cannot load the model folder {model} for the token budget: {err}") from err


def run_check(data, image_folder, model=None, max_length=None, data_format="auto", per_sample=None, out=None,
              tiling: dict | None = None) -> int:
    out = out or sys.stdout
    budget = _load_budget(model, max_length, tiling)
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
    parser.add_argument("config", nargs="?", help="an xtuner/mmengine config: its training dataset's data, model, "
                        "max_length and processor overrides are checked")
    parser.add_argument("--data", help="CLoT folder, ex_cn.json, Oogiri-GO jsonl, or conversation json/jsonl")
    parser.add_argument("--image-folder", help="folder the records' image paths are relative to")
    parser.add_argument("--model", help="InternVL2 model folder (config.json + tokenizer) for tiles and token budget")
    parser.add_argument("--max-length", type=int, help="training max_length to check the token budget against")
    parser.add_argument("--max-dynamic-patch", type=int, help="tile limit used in training (default: the config's "
                        "processor override, else the model's config.json)")
    parser.add_argument("--min-dynamic-patch", type=int, help="minimum tiles (default: as --max-dynamic-patch)")
    parser.add_argument("--dynamic-image-size", action=argparse.BooleanOptionalAction, default=None,
                        help="tile images dynamically (default: as --max-dynamic-patch); off = one tile per image")
    parser.add_argument("--use-thumbnail", action=argparse.BooleanOptionalAction, default=None,
                        help="add a thumbnail tile to multi-tile images (default: as --max-dynamic-patch)")
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
        settings = dict.fromkeys(("data", "image_folder", "model", "max_length") + TILING_KEYS)
        if args.config:
            settings = settings_from_config(args.config)
        for key in settings:
            if getattr(args, key) is not None:
                settings[key] = getattr(args, key)
        if settings["data"] is None:
            where = f"config {args.config} has no `data_path`; " if args.config else ""
            raise UsageError(f"{where}give a CONFIG or --data FILE")
        return run_check(settings["data"], settings["image_folder"], settings["model"], settings["max_length"],
                         args.format, args.per_sample, tiling={key: settings[key] for key in TILING_KEYS})
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
