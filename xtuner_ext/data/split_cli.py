"""Write a deterministic held-out split by image: ``train.json``, ``heldout.json``, ``split_meta.json``.

    python -m xtuner_ext.data.split_cli --data CLoT_cn_2000 --out CLoT_cn_2000 --heldout-count 40 --seed 0

``--data`` is a CLoT folder, an ``ex_cn.json``, an Oogiri-GO jsonl (with ``--image-folder``) or a
conversation json/jsonl. Point the training config's ``data_path`` at ``OUT/train.json`` and keep
``image_folder`` as before (it is recorded in ``split_meta.json``).
"""

from __future__ import annotations

import argparse
import sys

from .loaders import load_any
from .records import DataFormatError
from .split import HELDOUT_FILE, TRAIN_FILE, split_by_image, write_split


def heldout_count(text: str) -> int:
    """``--heldout-count``: a whole number of images, at least 1 (a split that holds out nothing is no split)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of images, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more images to hold out, got {value}")
    return value


def heldout_fraction(text: str) -> float:
    """``--heldout-fraction``: a share of the images, above 0 and below 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be above 0 and below 1 (a share of the images), got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xtuner_ext.data.split_cli", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="CLoT folder, ex_cn.json, Oogiri-GO jsonl or conversation json/jsonl")
    parser.add_argument("--image-folder", help="folder the records' image paths are relative to")
    parser.add_argument("--format", default="auto", choices=["auto", "clot", "oogiri", "conversations"])
    parser.add_argument("--out", required=True, help="folder for train.json, heldout.json, split_meta.json")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--heldout-count", type=heldout_count, help="number of images to hold out (1 or more)")
    group.add_argument("--heldout-fraction", type=heldout_fraction, help="share of images to hold out (0 < f < 1)")
    parser.add_argument("--seed", type=int, default=0)
    oogiri = parser.add_argument_group("Oogiri-GO filters")
    oogiri.add_argument("--task-types", nargs="+", choices=["I2T", "T2T", "IT2T"], help="keep only these task types")
    oogiri.add_argument("--min-stars", type=int, help="keep only answers with at least this many stars")
    oogiri.add_argument("--one-answer-per-image", action="store_true", help="keep the most-starred answer per image")
    args = parser.parse_args(argv)
    filters = {k: v for k, v in (("task_types", args.task_types), ("min_stars", args.min_stars),
                                 ("one_answer_per_image", args.one_answer_per_image or None)) if v is not None}
    try:
        loaded = load_any(args.data, args.image_folder, args.format, **filters)
        train, heldout = split_by_image(loaded.records, args.heldout_fraction, args.heldout_count, args.seed)
        meta = write_split(args.out, train, heldout, seed=args.seed, image_folder=loaded.image_folder, source=loaded.source)
    except (DataFormatError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for problem in loaded.problems:
        print(f"warning: not split (unparsable): {problem}", file=sys.stderr)
    c = meta["counts"]
    print(f"wrote {args.out}/{TRAIN_FILE} ({c['train_records']} records, {c['train_images']} images) and "
          f"{HELDOUT_FILE} ({c['heldout_records']} records, {c['heldout_images']} images); "
          f"image_folder={loaded.image_folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
