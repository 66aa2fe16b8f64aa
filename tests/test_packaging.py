"""The plugin as users meet it: stock `xtuner` CLI, registries, wheel install."""
import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from xtuner_ext import boot
from xtuner_ext.registration import REGISTERED, resolve

BIN = Path(sys.executable).parent


def run(*cmd, **kw):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)


def listed_names(stdout: str) -> set[str]:
    return {line.strip() for line in stdout.splitlines() if line.startswith('xtuner_ext')}


def test_config_index_lists_exactly_the_config_files(repo_root):
    index = json.loads((repo_root / 'configs' / 'index.json').read_text())
    on_disk = {p.relative_to(repo_root / 'configs').as_posix()
               for p in (repo_root / 'configs').rglob('*.py') if not p.name.startswith('_')}
    assert set(index.values()) == on_disk
    assert all(name.startswith('xtuner_ext_') for name in index)
    assert boot.shipped_configs() == {n: str(repo_root / 'configs' / rel) for n, rel in index.items()}


def test_stock_list_cfg_shows_every_shipped_config():
    result = run(BIN / 'xtuner', 'list-cfg', '-p', 'xtuner_ext')
    assert listed_names(result.stdout) == set(boot.shipped_configs()), result.stdout + result.stderr


@pytest.mark.parametrize('name', sorted(boot.shipped_configs()))
def test_stock_copy_cfg_by_name_copies_a_loadable_config(name, tmp_path):
    """A config that inherits (``_base_``) arrives with its bases, so the copy loads on its own; nothing is
    written outside the target folder."""
    from mmengine.config import Config

    source = boot.shipped_configs()[name]
    target = tmp_path / 'copies'
    run(BIN / 'xtuner', 'copy-cfg', name, target)
    copied = target / (Path(source).stem + '_copy.py')
    assert Config.fromfile(str(copied)).to_dict() == Config.fromfile(source).to_dict()
    assert sorted(p.name for p in tmp_path.iterdir()) == ['copies']


def test_xtuner_ext_cli_returns_the_tool_exit_code(tmp_path):
    missing = tmp_path / 'missing_config.py'
    assert run(BIN / 'xtuner', 'train', missing).returncode == 1  # stock xtuner too (boot.py passes it on)
    assert run(BIN / 'xtuner-ext', 'train', missing).returncode != 0
    assert run(BIN / 'xtuner-ext', 'list-cfg', '-p', 'xtuner_ext').returncode == 0
    assert run(BIN / 'xtuner-ext', 'no-such-mode').returncode == 2
    help_text = run(BIN / 'xtuner-ext', 'convert', '-h')  # a mode that only prints help
    assert help_text.returncode == 0 and 'pth_to_hf' in help_text.stdout + help_text.stderr


def test_stock_xtuner_model_builders_query_bf16_on_cpu():
    code = ('from mmengine.config import ConfigDict\n'
            'from transformers import LlamaConfig\n'
            'from xtuner.model.sft import SupervisedFinetune\n'
            'cfg = SupervisedFinetune._prepare_for_flash_attn(\n'
            '    ConfigDict(attn_implementation="flash_attention_2"), LlamaConfig())\n'
            'print(cfg.torch_dtype)\n')
    result = run(sys.executable, '-c', code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith('torch.bfloat16')


@pytest.mark.parametrize('registry_name', sorted(REGISTERED))
def test_registered_objects_resolve_by_name(registry_name):
    import xtuner_ext  # noqa: F401  (registers)
    from xtuner_ext.registration import _registries
    registry = _registries()[registry_name]
    for dotted in REGISTERED[registry_name]:
        obj = resolve(dotted)
        assert registry.get(obj.__name__) is obj


def test_atomic_backend_keeps_old_file_when_a_write_fails(tmp_path):
    from mmengine.fileio import get_file_backend
    backend = get_file_backend(tmp_path, backend_args=dict(backend='atomic_local'))
    target = tmp_path / 'iter_1.pth'
    backend.put(b'complete checkpoint', target)
    with pytest.raises(TypeError):
        backend.put(object(), target)  # fails while writing
    assert target.read_bytes() == b'complete checkpoint'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['iter_1.pth']


def test_mmengine_checkpoint_with_message_hub_loads_under_weights_only(tmp_path):
    import numpy as np
    import torch
    from mmengine.logging import MessageHub
    from mmengine.runner.checkpoint import _load_checkpoint
    hub = MessageHub.get_instance('xtuner_ext_test')
    hub.update_scalar('train/loss', np.float64(1.5))
    hub.update_info('keep_ckpt_ids', [1, 2])
    path = tmp_path / 'iter_2.pth'
    torch.save({'meta': {'seed': 7, 'message_hub': hub.state_dict()},
                'state_dict': {'w': torch.ones(2)}}, path)
    loaded = _load_checkpoint(str(path), map_location='cpu')
    assert loaded['meta']['seed'] == 7
    from xtuner.tools.utils import get_seed_from_checkpoint  # what `xtuner train --resume` calls
    assert get_seed_from_checkpoint(str(path)) == 7
    assert torch.equal(loaded['state_dict']['w'], torch.ones(2))


@pytest.mark.slow
def test_wheel_install_lists_and_copies_configs(tmp_path, repo_root):
    wheel_dir = tmp_path / 'wheel'
    built = run(sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps', '-w', wheel_dir, repo_root)
    assert built.returncode == 0, built.stderr
    env_dir = tmp_path / 'env'
    venv.EnvBuilder(with_pip=False).create(env_dir)
    site = next(env_dir.glob('lib/python*/site-packages'))
    deps_site = next(Path(sys.prefix).glob('lib/python*/site-packages'))
    (site / 'deps.pth').write_text(str(deps_site) + '\n')  # torch, xtuner, ... but no editable xtuner_ext
    installed = run(sys.executable, '-m', 'pip', '--python', env_dir / 'bin' / 'python', 'install',
                    '-q', '--no-deps', *wheel_dir.glob('*.whl'))
    assert installed.returncode == 0, installed.stderr
    env = dict(os.environ, PATH=f'{env_dir / "bin"}{os.pathsep}{os.environ["PATH"]}')
    where = run(env_dir / 'bin' / 'python', '-c', 'import xtuner_ext.boot as b; print(b.configs_dir())',
                env=env, cwd=tmp_path)
    assert where.stdout.strip() == str(site / 'xtuner_ext' / 'configs'), where.stderr
    list_cfg = run(env_dir / 'bin' / 'python', '-m', 'xtuner.tools.list_cfg', '-p', 'xtuner_ext',
                   env=env, cwd=tmp_path)
    assert listed_names(list_cfg.stdout) == set(boot.shipped_configs()), list_cfg.stderr
    copy = run(env_dir / 'bin' / 'python', '-m', 'xtuner.tools.copy_cfg',
               'xtuner_ext_internvl2_2b_qlora', tmp_path / 'out', env=env, cwd=tmp_path)
    assert (tmp_path / 'out' / 'internvl2_2b_qlora_copy.py').is_file(), copy.stderr
    shutil.rmtree(env_dir)


@pytest.mark.parametrize('need_gib, refused', [(10**9, True), (0.001, False)])
def test_make_install_checks_free_space_before_creating_the_venv(tmp_path, repo_root, need_gib, refused):
    """`make install` on a fresh clone refuses a disk too small for the stack, naming the space needed and free,
    before pip starts; enough space passes the same check."""
    for name in ('Makefile', 'tools/check_free_space.py', 'requirements/lock.txt', 'pyproject.toml'):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(repo_root / name, tmp_path / name)
    if refused:
        made = run('make', 'install', f'INSTALL_GIB={need_gib}', cwd=tmp_path)
        assert made.returncode != 0 and not (tmp_path / '.venv').exists()
        assert f'needs about {need_gib:g} GiB free in {tmp_path}' in made.stderr, made.stderr
    else:
        checked = run('python3', 'tools/check_free_space.py', '--need-gib', need_gib, tmp_path, cwd=tmp_path)
        assert checked.returncode == 0 and not checked.stderr
