"""boot.py as users meet it: the stock `xtuner` command and a plain `import xtuner_ext`."""
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def run(*cmd, **kw):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)


def test_stock_xtuner_exits_with_the_tool_exit_code():
    failed = run(BIN / 'xtuner', 'train', 'no_such_config')
    assert failed.returncode == 1 and 'Cannot find no_such_config' in failed.stderr, failed.stderr[-2000:]


@pytest.mark.parametrize('args, code', [
    (['no-such-mode'], 2),  # stock cli() prints "command error" and its help
    (['convert', 'no_such_converter'], 2),
    (['convert', '-h'], 0),  # a mode that only prints its help
    (['version'], 0),
    (['list-cfg', '-p', 'xtuner_ext'], 0),
])
def test_stock_xtuner_exit_code_without_a_failing_tool(args, code):
    assert run(BIN / 'xtuner', *args).returncode == code


def test_shell_exit_code_of_a_killed_child():
    from xtuner_ext.boot import shell_exit_code
    assert (shell_exit_code(-9), shell_exit_code(0), shell_exit_code(3)) == (137, 0, 3)


def test_import_is_light_and_registration_follows_mmengine():
    code = ('import sys, xtuner_ext\n'
            'print("torch" in sys.modules)\n'
            'from mmengine.registry import MODELS\n'
            'from xtuner.registry import MAP_FUNC\n'
            'print(MODELS.get("InternVL2QLoRA").__name__, MAP_FUNC.get("clot_map_fn").__name__)\n')
    result = run(sys.executable, '-c', code)
    assert result.stdout.split() == ['False', 'InternVL2QLoRA', 'clot_map_fn'], result.stderr[-2000:]


def test_registration_at_once_when_mmengine_is_loaded():
    code = ('import mmengine.registry, xtuner_ext\n'
            'print(mmengine.registry.HOOKS.get("RandomStateHook").__name__)\n')
    result = run(sys.executable, '-c', code)
    assert result.stdout.split() == ['RandomStateHook'], result.stderr[-2000:]


NOISY_SCRIPT = '''
import logging, warnings
import torch
from torch import nn
from mmengine.logging import print_log
from xtuner_ext.models.quantization import QuantizationSettings, quantize_linear_layers

model = nn.Sequential(nn.Linear(64, 64))
quantize_linear_layers(model, QuantizationSettings(quant_type='nf4', compute_dtype=torch.float32), torch.device('cpu'))
model(torch.randn(2, 64))  # bitsandbytes' 4-bit CPU kernels
print_log('"FileClient" will be deprecated in future. Please use io functions', 'current', logging.WARNING)
print_log('a warning that matters', 'current', logging.WARNING)
warnings.warn_explicit('a FutureWarning that matters', FutureWarning, 'ops.py', 1, module='bitsandbytes.backends')
'''


def test_known_harmless_notices_are_dropped_and_others_kept():
    result = run(sys.executable, '-c', NOISY_SCRIPT)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert '_check_is_size' not in output and 'kernels-community' not in output and 'FileClient' not in output
    assert 'a warning that matters' in output and 'a FutureWarning that matters' in output


def test_import_replaces_the_finder_of_an_older_boot_copy():
    """A source checkout on PYTHONPATH over an older install: its boot finder knows no after-import callbacks."""
    code = ('import importlib.abc, sys\n'
            'class OlderFinder(importlib.abc.MetaPathFinder):\n'
            '    _xtuner_ext_post_import = True\n'
            '    def find_spec(self, *args):\n'
            '        return None\n'
            'sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "_xtuner_ext_post_import", False)]\n'
            'sys.meta_path.insert(0, OlderFinder())\n'
            'import xtuner_ext\n'
            'from mmengine.registry import MODELS\n'
            'print(MODELS.get("InternVL2QLoRA").__name__, any(isinstance(f, OlderFinder) for f in sys.meta_path))\n')
    result = run(sys.executable, '-c', code)
    assert result.stdout.split() == ['InternVL2QLoRA', 'False'], result.stderr[-2000:]
