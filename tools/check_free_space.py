"""Refuse to start `make install` on a disk that cannot hold the locked stack.

    python tools/check_free_space.py --need-gib 8 DIR

Runs before .venv exists, with the system Python (standard library only). pip, when the disk fills part-way,
stops with "[Errno 28] No space left on device" after minutes and leaves a half-built .venv; this says at once
how much is needed, how much is free, and where.
"""
import argparse
import shutil
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory")
    parser.add_argument("--need-gib", type=float, required=True)
    args = parser.parse_args(argv)
    free_gib = shutil.disk_usage(args.directory).free / 2**30
    if free_gib >= args.need_gib:
        return 0
    print(f"error: the locked stack needs about {args.need_gib:g} GiB free in {args.directory} "
          f"(torch's CUDA build and its NVIDIA libraries are most of it); {free_gib:.1f} GiB is free there. "
          "Free some space (or clone the repository onto a larger disk) and run make again.", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
