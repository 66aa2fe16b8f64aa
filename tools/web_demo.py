"""Chat with a base and a fine-tuned InternVL2 side by side in the browser (same as `xtuner-ext web`).

    python tools/web_demo.py BASE [FINETUNED] [--examples heldout.json] [--host 127.0.0.1] [--port 7860]
"""
import sys

from xtuner_ext.web.launch import main

if __name__ == '__main__':
    sys.exit(main())
