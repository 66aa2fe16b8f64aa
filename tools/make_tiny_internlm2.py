"""Write a seeded random InternLM2 checkpoint in the official layout (the tiny InternVL2's LLM).

    python tools/make_tiny_internlm2.py OUT_DIR [--seed N] [--overwrite]
"""
import argparse
import sys

from xtuner_ext.models.internlm2.tiny import make_tiny_internlm2


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('out_dir')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--overwrite', action='store_true', help='replace OUT_DIR if it exists')
    args = parser.parse_args(argv)
    print(f'wrote {make_tiny_internlm2(args.out_dir, seed=args.seed, overwrite=args.overwrite)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
