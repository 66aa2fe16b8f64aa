"""`xtuner-ext`: stock XTuner's modes, this interpreter, the tool's exit code; usage at once."""
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

from xtuner_ext.cli import stock_modes, tool_file

BIN = Path(sys.executable).parent


def test_usage_is_printed_in_under_a_second():
    start = time.monotonic()
    result = subprocess.run([str(BIN / 'xtuner-ext')], capture_output=True, text=True)
    elapsed = time.monotonic() - start
    assert result.returncode == 2 and 'usage: xtuner-ext MODE' in result.stderr and 'train' in result.stderr
    assert elapsed < 1.0, f'{elapsed:.2f} s'


def test_mode_table_is_xtuners_own():
    from xtuner import entry_point

    ours = stock_modes()
    assert ours.keys() == entry_point.modes.keys()
    for mode, stock in entry_point.modes.items():
        entries = ours[mode] if isinstance(stock, dict) else {None: ours[mode]}
        stocks = stock if isinstance(stock, dict) else {None: stock}
        assert entries.keys() == stocks.keys()
        for key, function in stocks.items():
            tool = entries[key]
            assert tool.function == function.__name__
            if function in entry_point.HELP_FUNCS:
                assert tool.module is None
            else:  # where the stock function's import finds the tool, without running it
                assert tool_file(tool.module) == importlib.util.find_spec(tool.module).origin
