"""`make demo`: the main job on the embedded default (grows as the package does)."""
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def main() -> int:
    return subprocess.run([str(BIN / 'xtuner-ext'), 'list-cfg', '-p', 'xtuner_ext']).returncode


if __name__ == '__main__':
    sys.exit(main())
