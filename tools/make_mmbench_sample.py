"""Write the embedded MMBench-layout sample TSV (own pictures, questions and answers).

    python tools/make_mmbench_sample.py OUT.tsv [--questions 12] [--seed 0] [--split dev|test]
                                        [--language en|cn] [--circular-copies]

Name the file like the official ones (``*_CN*.tsv`` makes ``xtuner-ext mmbench`` ask in Chinese).
"""
import argparse
import sys

from xtuner_ext.evaluation.mmbench.sample import make_mmbench_sample


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('out')
    parser.add_argument('--questions', type=int, default=12)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--split', choices=('dev', 'test'), default='dev', help='test: no answer column')
    parser.add_argument('--language', choices=('en', 'cn'), default='en')
    parser.add_argument('--circular-copies', action='store_true', help='add rotated copies (index + k*1e6)')
    args = parser.parse_args(argv)
    path = make_mmbench_sample(args.out, args.questions, args.seed, args.split, args.language, args.circular_copies)
    print(f'wrote {args.questions} {args.language} questions ({args.split} split) to {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
