"""Preflight check of training data before `xtuner train`.

    python tools/check_data.py CONFIG
    python tools/check_data.py --data FILE_OR_FOLDER --image-folder DIR [--model DIR] [--max-length N]

Exit status: 0 all records usable, 1 some records have problems, 2 usage or file error.
"""
import sys

from xtuner_ext.data.check import main

if __name__ == "__main__":
    sys.exit(main())
