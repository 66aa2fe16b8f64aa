"""Repeat a json list of records N times (the LLaVA tutorial's repeat.py).

    python tools/repeat_data.py -i unique_data.json -o repeated_data.json -n 200
"""
import sys

from xtuner_ext.data.repeat import main

if __name__ == '__main__':
    sys.exit(main())
