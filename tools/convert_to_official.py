"""Convert a trained InternVL2 (Q)LoRA run into one official InternVL2 folder, checked.

    python tools/convert_to_official.py CONFIG CHECKPOINT SAVE_DIR [--dtype bfloat16] [--base-model DIR]

The same as ``xtuner-ext convert-official`` (see ``--help``); the work is in xtuner_ext.convert.
"""
import sys

from xtuner_ext.convert.convert_cli import main

if __name__ == '__main__':
    sys.exit(main())
