"""Write the personal-assistant tutorial's data (OpenAI ``messages`` json).

    python tools/make_assistant_data.py --name NAME [-n 10000] [-o data/personal_assistant.json]
"""
import sys

from xtuner_ext.data.assistant import main

if __name__ == '__main__':
    sys.exit(main())
