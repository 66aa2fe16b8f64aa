"""Write a seeded random InternVL2 checkpoint in the official layout.

    python tools/make_tiny_model.py OUT_DIR [--seed N] [--preset tiny|internvl2-2b] [--llm-heads 4 ...]
    python tools/make_tiny_model.py embedded/internvl2_tiny --embedded   # make demo's default

A thin wrapper over ``xtuner_ext.models.internvl2.tiny.make_tiny_model``; every preset field can be
overridden with ``--field-name`` (see ``--help``).
"""
import argparse
import logging

from xtuner_ext.models.internvl2.tiny import PRESETS, make_embedded_model, make_tiny_model

logger = logging.getLogger('make_tiny_model')


def _bool(text: str) -> bool:
    if text.lower() not in ('true', 'false', '1', '0'):
        raise argparse.ArgumentTypeError(f'expected true/false, got {text!r}')
    return text.lower() in ('true', '1')


def _type_of(value):
    if isinstance(value, bool):
        return _bool
    return type(value) if value is not None else int


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('out_dir', help='folder to create (must not exist unless --overwrite)')
    parser.add_argument('--seed', type=int, default=0, help='weight seed (default 0)')
    parser.add_argument('--preset', choices=sorted(PRESETS), default='tiny')
    parser.add_argument('--overwrite', action='store_true', help='replace OUT_DIR if it exists')
    parser.add_argument('--embedded', action='store_true',
                        help="make demo's default: tokenizer built for the embedded sample, 224-pixel tiles")
    for field, default in PRESETS['tiny'].items():
        parser.add_argument('--' + field.replace('_', '-'), dest=field, type=_type_of(default), default=None,
                            help=f'override the preset (tiny: {default})')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    args = vars(parse_args(argv))
    out_dir, seed, preset, overwrite, embedded = (args.pop(k) for k in ('out_dir', 'seed', 'preset', 'overwrite',
                                                                        'embedded'))
    overrides = {k: v for k, v in args.items() if v is not None}
    if embedded:
        path = make_embedded_model(out_dir, seed=seed, overwrite=overwrite, **overrides)
    else:
        path = make_tiny_model(out_dir, seed=seed, preset=preset, overwrite=overwrite, **overrides)
    logger.info('wrote %s (preset %s, seed %d, overrides %s)', path, preset, seed, overrides or 'none')


if __name__ == '__main__':
    main()
