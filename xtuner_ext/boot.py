"""Interpreter-start hooks that let *stock* XTuner and mmengine work with xtuner_ext.

``xtuner <cmd>`` runs its tools in a fresh ``python`` child that never imports
``xtuner_ext`` before it needs a config (and XTuner has no plugin entry point).
So the wheel installs ``xtuner_ext_boot.pth``, which executes this file at every
interpreter start *without* importing the ``xtuner_ext`` package (that would pull
in torch for every Python process). It only installs a ``sys.meta_path`` finder
that runs a small patch right after a listed module finishes executing:

- ``xtuner.configs``: add the shipped configs (``configs/index.json``) to
  ``cfgs_name_path``, so ``xtuner list-cfg/copy-cfg/train`` know them by name
  (and under ``copy-cfg``, copy the files a config inherits, ``_base_``, beside the copy);
- ``xtuner.utils.device``: give ``torch.cpu`` the ``is_bf16_supported()`` query
  that XTuner's model builders call on CPU-only machines;
- ``mmengine.runner.checkpoint`` and ``xtuner.tools.utils``: allow the few
  classes mmengine stores in its checkpoints while they are loaded, under
  torch>=2.6's ``weights_only`` default (``--resume``), and name a checkpoint
  file that is truncated or corrupt;
- ``mmengine.fileio``: register the ``atomic_local`` file backend, so
  checkpoints are written to a temporary name and renamed into place;
- ``mmengine.hooks.checkpoint_hook``: the ``last_checkpoint`` pointer is written the same way
  (stock writes it with a plain ``open``);
- ``mmengine.dist.utils`` and ``mmengine._strategy.deepspeed``: ``torchrun`` ranks join a gloo group on a
  machine without CUDA, and ``--deepspeed`` in one plain process gets a one-process group instead of
  an MPI search (``distributed.py``); DeepSpeed checkpoints call the checkpoint hooks as other
  checkpoints do (stock ignores them), so ``RandomStateHook`` makes those resumes exact too;
- ``mmengine.config`` (only inside XTuner's ``pth_to_hf.py``): an InternVL2QLoRA config is
  converted by ``xtuner_ext.convert`` instead of crashing on ``cfg.model.llm``.
- ``xtuner.model.sft`` and ``xtuner.model.llava``: let ``llm=`` builders of
  xtuner_ext (native InternLM2) skip XTuner's remote-code ``AutoConfig`` probe.
- ``xtuner.entry_point``: ``xtuner <cmd>`` exits with its tool's exit code
  (stock ``cli()`` drops the code of the ``subprocess.run`` it ends with);
- ``mmengine.runner.runner`` and ``mmengine.runner._flexible_runner``: every run
  gets ``RunStartHook`` (``engine/run_start_hook.py``): temp files of killed
  checkpoint writes are removed, a resume with nothing left to train fails;
- ``bitsandbytes.functional``, ``mmengine.logging.logger`` and ``deepspeed.utils.logging``: drop a few
  known-harmless notices (``NOISE``), each matched by its source and the start of its message.

Stdlib only at module level; every patch is idempotent. Helpers the patches call at run time
(``write_atomically``, the checkpoint allow-list) live in plain modules (``fileio``,
``safe_load``) and are imported when first used.
"""
import functools
import importlib.abc
import json
import os
import sys
import warnings

CONFIG_INDEX_FILE = 'index.json'
_FINDER_MARK = '_xtuner_ext_post_import'
_WRAPPED = '_xtuner_ext_wrapped'


def wrap_once(owner, name: str, make_wrapper, store=None) -> bool:
    """Set ``owner.<name>`` to ``make_wrapper(original)``, marked as ours, unless it already is (the boot may
    run twice in one process). ``store`` wraps what is set (``staticmethod``). Returns whether it patched."""
    original = getattr(owner, name)
    if getattr(original, _WRAPPED, False):
        return False
    wrapper = make_wrapper(original)
    setattr(wrapper, _WRAPPED, True)
    setattr(owner, name, store(wrapper) if store else wrapper)
    return True


def configs_dir() -> str:
    """The shipped config folder: ``xtuner_ext/configs`` in a wheel, the
    repository's top-level ``configs/`` in a source checkout."""
    here = os.path.dirname(os.path.abspath(__file__))
    for candidate in (os.path.join(here, 'configs'),
                      os.path.join(os.path.dirname(here), 'configs')):
        if os.path.isfile(os.path.join(candidate, CONFIG_INDEX_FILE)):
            return candidate
    raise FileNotFoundError(
        f'xtuner_ext configs not found next to {here}: the install is '
        f'incomplete; reinstall xtuner_ext (pip install -e . or the wheel).')


def shipped_configs() -> dict:
    """``{name: absolute path}`` of every config the package ships."""
    root = configs_dir()
    with open(os.path.join(root, CONFIG_INDEX_FILE), encoding='utf-8') as f:
        index = json.load(f)
    return {name: os.path.join(root, rel) for name, rel in index.items()}


def add_shipped_configs(xtuner_configs) -> None:
    xtuner_configs.cfgs_name_path.update(shipped_configs())
    if os.path.basename(sys.argv[0] if sys.argv else '') == 'copy_cfg.py':
        copy_config_bases_at_exit()


def add_cpu_bf16_query(_device_module) -> None:
    import torch
    if not hasattr(torch.cpu, 'is_bf16_supported'):
        # bf16 kernels exist for every CPU; report native support honestly.
        torch.cpu.is_bf16_supported = lambda including_emulation=True: bool(
            including_emulation or torch.cpu._is_avx512_bf16_supported())


def _loading_mmengine_globals(load):
    import torch

    @functools.wraps(load)
    def wrapper(path, *args, **kwargs):
        # imported when first needed
        from xtuner_ext.safe_load import mmengine_checkpoint_globals, naming_corrupt_checkpoint

        with naming_corrupt_checkpoint(path), torch.serialization.safe_globals(mmengine_checkpoint_globals()):
            return load(path, *args, **kwargs)
    return wrapper


def allow_mmengine_checkpoint_classes(checkpoint_module) -> None:
    """mmengine 0.10.6 calls ``torch.load`` without ``weights_only``; torch>=2.6
    then refuses the message-hub state it pickled (so ``--resume`` fails). Allow
    exactly those classes, only while mmengine loads a local checkpoint, instead
    of switching the safety check off."""
    loader = checkpoint_module.CheckpointLoader
    local = loader._schemes['']
    if not getattr(local, _WRAPPED, False):  # a registered scheme, not an attribute: wrap_once does not fit
        wrapped = _loading_mmengine_globals(local)
        setattr(wrapped, _WRAPPED, True)
        loader.register_scheme(prefixes='', loader=wrapped, force=True)


def allow_seed_lookup_in_checkpoints(xtuner_tool_utils) -> None:
    """``xtuner train --resume`` reads the seed with its own bare ``torch.load``."""
    wrap_once(xtuner_tool_utils, 'get_seed_from_checkpoint', _loading_mmengine_globals)


def register_atomic_backend(fileio) -> None:
    """``backend_args=dict(backend='atomic_local')`` in a CheckpointHook makes a
    killed run leave either the old state or a complete file, never half of one."""
    if 'atomic_local' in fileio.backends.backends:
        return

    class AtomicLocalBackend(fileio.LocalBackend):
        def put(self, obj: bytes, filepath) -> None:
            from xtuner_ext.fileio import write_atomically  # imported when first needed
            write_atomically(str(filepath), obj)

        def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
            self.put(obj.encode(encoding), filepath)

    fileio.register_backend('atomic_local', AtomicLocalBackend)


def _open_writing_atomically(file, mode='r', *args, **kwargs):
    from xtuner_ext.fileio import open_writes_atomically  # imported when first needed
    return open_writes_atomically(file, mode, *args, **kwargs)


def write_checkpoint_pointer_atomically(checkpoint_hook_module) -> None:
    """``CheckpointHook`` writes ``work_dir/last_checkpoint`` with the module's ``open`` (its only ``open``):
    give that module an ``open`` whose text writes are temp-then-rename, so a kill never leaves an empty or
    half-written pointer."""
    checkpoint_hook_module.open = _open_writing_atomically


def join_process_group_without_cuda(dist_utils) -> None:
    """mmengine's pytorch launcher calls ``torch.cuda.set_device`` even for a gloo group on a CPU machine."""
    def make(stock):
        def _init_dist_pytorch(backend, init_backend='torch', **kwargs):
            from xtuner_ext.distributed import init_dist_pytorch_on_cpu  # imported when first needed
            return init_dist_pytorch_on_cpu(stock)(backend, init_backend=init_backend, **kwargs)
        return _init_dist_pytorch

    wrap_once(dist_utils, '_init_dist_pytorch', make)


def deepspeed_single_process_group(deepspeed_strategy) -> None:
    """``xtuner train --deepspeed`` without torchrun: DeepSpeed would look for MPI; describe one process."""
    def make(wrap):
        @functools.wraps(wrap)
        def _wrap_model(self, model):
            from xtuner_ext.distributed import single_process_rendezvous  # imported when first needed
            single_process_rendezvous()
            return wrap(self, model)
        return _wrap_model

    wrap_once(deepspeed_strategy.DeepSpeedStrategy, '_wrap_model', make)


def deepspeed_checkpoint_hooks(deepspeed_strategy) -> None:
    """mmengine's DeepSpeed strategy takes the runner's checkpoint-hook callback and ignores it ("not supported
    yet"), so under ``--deepspeed`` no hook adds to a checkpoint or reads one back (``RandomStateHook``'s random
    states, ``BeforeAfterChatHook``'s history). Call it: before the save with the extra state DeepSpeed stores
    as its client state, after a resume with what came back."""
    def make_save(save):
        @functools.wraps(save)
        def save_checkpoint(self, filename, *, extra_ckpt=None, callback=None, **kwargs):
            extra_ckpt = {} if extra_ckpt is None else extra_ckpt
            if callback is not None:
                callback(extra_ckpt)
            return save(self, filename, extra_ckpt=extra_ckpt, **kwargs)
        return save_checkpoint

    def make_resume(resume):
        @functools.wraps(resume)
        def resume_with_hooks(self, filename, *, callback=None, **kwargs):
            checkpoint = resume(self, filename, **kwargs)
            if callback is not None:
                callback(checkpoint)
            return checkpoint
        return resume_with_hooks

    wrap_once(deepspeed_strategy.DeepSpeedStrategy, 'save_checkpoint', make_save)
    wrap_once(deepspeed_strategy.DeepSpeedStrategy, 'resume', make_resume)


def deepspeed_patches(deepspeed_strategy) -> None:
    deepspeed_single_process_group(deepspeed_strategy)
    deepspeed_checkpoint_hooks(deepspeed_strategy)


def copy_config_bases_at_exit() -> None:
    """``xtuner copy-cfg NAME DIR`` (run as a script, so no import hook reaches it) copies one file;
    our configs inherit (``_base_``), so the files they inherit from are copied beside it at exit."""
    import atexit
    args = [a for a in sys.argv[1:] if not a.startswith('-')]
    if len(args) != 2:
        return
    source = shipped_configs().get(args[0])
    if source:
        copy = os.path.join(args[1], os.path.splitext(os.path.basename(source))[0] + '_copy.py')  # copy_cfg's name
        atexit.register(lambda: os.path.isfile(copy) and copy_bases(source, args[1], copy))


def copy_bases(config_path: str, save_dir: str, copy_path: str = '') -> None:
    """Copy the ``_base_`` files ``config_path`` names (relative paths, recursively) into ``save_dir``.

    A base outside the config's folder (``../../hooks/x.py``) is copied beside the copy, and the copy
    (``copy_path``) is pointed at it: nothing is written outside ``save_dir``."""
    import ast
    import shutil
    with open(config_path, encoding='utf-8') as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, 'id', '') == '_base_' for t in node.targets):
            bases = ast.literal_eval(node.value)
            for base in [bases] if isinstance(bases, str) else bases:
                source = os.path.join(os.path.dirname(config_path), base)
                local = base if not os.path.normpath(base).startswith('..') else './' + os.path.basename(base)
                if local != base and copy_path:
                    with open(copy_path, encoding='utf-8') as f:
                        text = f.read().replace(repr(base), repr(local))
                    with open(copy_path, 'w', encoding='utf-8') as f:
                        f.write(text)
                target = os.path.join(save_dir, local)
                if not os.path.exists(target):
                    os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
                    shutil.copyfile(source, target)
                    copy_bases(source, os.path.dirname(os.path.abspath(target)), target)


def redirect_internvl2_pth_to_hf(config_module) -> None:
    """Stock ``xtuner convert pth_to_hf`` reads ``cfg.model.llm`` and crashes on InternVL2QLoRA configs;
    inside that tool only, such a config runs xtuner_ext's converter (``xtuner_ext.convert``) instead."""
    if os.path.basename(sys.argv[0] if sys.argv else '') != 'pth_to_hf.py':
        return
    def make(load):
        def fromfile(filename, *args, **kwargs):
            cfg = load(filename, *args, **kwargs)
            model_type = (cfg.get('model') or {}).get('type')
            if (model_type if isinstance(model_type, str) else getattr(model_type, '__name__', '')) == 'InternVL2QLoRA':
                from xtuner_ext.convert.stock_pth_to_hf import run_for_stock_tool  # imported when first needed
                config_module.Config.fromfile = staticmethod(load)  # the converter reads the config itself
                raise SystemExit(run_for_stock_tool(str(filename), sys.argv[1:]))
            return cfg
        return fromfile

    wrap_once(config_module.Config, 'fromfile', make, store=staticmethod)


def _names_native_llm_builder(llm_type) -> bool:
    if isinstance(llm_type, str) and '.' in llm_type:  # a dotted path in a config
        module, _, name = llm_type.rpartition('.')
        if not module.startswith('xtuner_ext.'):
            return False
        import importlib
        llm_type = getattr(importlib.import_module(module), name, None)
    return bool(getattr(llm_type, 'xtuner_ext_native_llm', False))


def skip_remote_config_for_native_llms(module) -> None:
    """``SupervisedFinetune``/``LLaVAModel`` read every ``llm=`` dict's folder with
    ``AutoConfig.from_pretrained(..., trust_remote_code=True)`` (to pick flash attention), which runs
    the folder's remote code, or fails where there is none. xtuner_ext's own builders (marked
    ``xtuner_ext_native_llm``) load without remote code and choose attention themselves: skip it."""
    def make(dispatch):
        def _dispatch_lm_model_cfg(self, cfg, max_position_embeddings=None):
            if _names_native_llm_builder(cfg.get('type')):
                if max_position_embeddings is not None:
                    raise ValueError('max_position_embeddings is not supported with xtuner_ext LLM builders: set '
                                     'rope_scaling in the model folder\'s config.json instead')
                return cfg
            return dispatch(self, cfg, max_position_embeddings)
        return _dispatch_lm_model_cfg

    wrap_once(getattr(module, 'LLaVAModel', None) or getattr(module, 'SupervisedFinetune'), '_dispatch_lm_model_cfg',
              make)


def shell_exit_code(returncode: int) -> int:
    """A child's return code as a shell reports it: killed by signal N gives 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


class _RecordingSubprocess:
    """Stands in for ``subprocess`` inside ``xtuner.entry_point`` only: ``run`` keeps the child's code."""

    def __init__(self, codes: list):
        self._codes = codes

    def run(self, *args, **kwargs):
        import subprocess  # not at interpreter start
        result = subprocess.run(*args, **kwargs)
        self._codes.append(result.returncode)
        return result

    def __getattr__(self, name):
        import subprocess
        return getattr(subprocess, name)


def _prints_help_only(entry_point, args: list) -> bool:
    """What stock ``cli()`` answers without a child and without error: no arguments, ``help``/``version``, or a
    mode's own help (``convert -h``); anything else without a child was a "command error"."""
    if not args or args[0].lower() in entry_point.special:
        return True
    entry = entry_point.modes.get(args[0].lower())
    return isinstance(entry, dict) and len(args) > 1 and entry.get(args[1].lower()) in entry_point.HELP_FUNCS


def return_tool_exit_code(entry_point) -> None:
    """The ``xtuner`` script runs ``sys.exit(cli())``, and stock ``cli()`` returns None whatever happened.
    Make it return the tool's exit code, or 2 for a command it rejected."""
    codes = []

    def make(cli):
        @functools.wraps(cli)
        def cli_with_exit_code():
            codes.clear()
            cli()
            if codes:
                return shell_exit_code(codes[-1])
            return 0 if _prints_help_only(entry_point, sys.argv[1:]) else 2
        return cli_with_exit_code

    if wrap_once(entry_point, 'cli', make):
        entry_point.subprocess = _RecordingSubprocess(codes)


def _hook_name(hook) -> str:
    """``dict(type='Name')``, ``dict(type=Class)`` or a hook object -> the hook class name."""
    kind = hook.get('type') if isinstance(hook, dict) else type(hook)
    return kind if isinstance(kind, str) else getattr(kind, '__name__', '')


def add_run_start_hook(runner_module) -> None:
    """Every run gets ``RunStartHook`` (removes temp files of killed checkpoint writes, refuses a resume with
    nothing left to train) without each config having to list it."""
    def make(register):
        @functools.wraps(register)
        def register_hooks(self, default_hooks=None, custom_hooks=None, *args, **kwargs):
            custom_hooks = list(custom_hooks or [])
            if 'RunStartHook' not in {_hook_name(hook) for hook in custom_hooks}:
                from xtuner_ext.engine.run_start_hook import RunStartHook  # imported when first needed
                custom_hooks.append(RunStartHook())
            return register(self, default_hooks, custom_hooks, *args, **kwargs)
        return register_hooks

    wrap_once(getattr(runner_module, 'Runner', None) or getattr(runner_module, 'FlexibleRunner'), 'register_hooks',
              make)


# Known-harmless notices users cannot act on, matched narrowly: where they come from and how they start.
NOISE = dict(
    # torch >= 2.9 deprecates an internal check that bitsandbytes 0.49 calls on every 4-bit matmul
    bitsandbytes_warnings=[(FutureWarning, r'bitsandbytes\.', r'_check_is_size will be removed')],
    # on AVX512-BF16 CPUs: an optional faster kernel package is absent; bitsandbytes uses its own
    bitsandbytes_log={
        'bitsandbytes.backends.cpu.ops': ('Failed to load CPU gemm_4bit_forward from kernels-community',)},
    # mmengine's CheckpointHook builds a FileClient for backward compatibility on every run
    mmengine_log=('"FileClient" will be deprecated in future', '"HardDiskBackend" is the alias of "LocalBackend"'),
    # on a machine without CUDA, printed to stdout by every process that imports deepspeed (mmengine and xtuner do)
    deepspeed_log=('Setting accelerator to CPU. If you have GPU or other accelerator, we were unable to detect it.',),
)


class DropMessages:
    """A logging filter that drops records whose message starts with one of ``starts``."""

    def __init__(self, starts: tuple):
        self.starts = tuple(starts)

    def __eq__(self, other):  # logging adds a filter only once: equal filters count as the same
        return isinstance(other, DropMessages) and other.starts == self.starts

    __hash__ = None

    def filter(self, record) -> bool:
        return not str(record.msg).startswith(self.starts)


def quiet_bitsandbytes(_functional) -> None:
    """Runs when ``bitsandbytes.functional`` has loaded, before the backends that log or warn use it."""
    import logging
    for category, module, message in NOISE['bitsandbytes_warnings']:
        warnings.filterwarnings('ignore', message=message, category=category, module=module)
    for name, starts in NOISE['bitsandbytes_log'].items():
        logging.getLogger(name).addFilter(DropMessages(starts))


def quiet_deepspeed_cpu_notice(deepspeed_logging) -> None:
    """Runs when ``deepspeed.utils.logging`` has made DeepSpeed's logger, before the accelerator lookup logs."""
    deepspeed_logging.logger.addFilter(DropMessages(NOISE['deepspeed_log']))


def quiet_mmengine_deprecations(logger_module) -> None:
    """Every ``MMLogger`` (mmengine's ``print_log`` goes through one) drops ``NOISE['mmengine_log']``."""
    def make(init):
        @functools.wraps(init)
        def init_with_filter(self, *args, **kwargs):
            init(self, *args, **kwargs)
            self.addFilter(DropMessages(NOISE['mmengine_log']))
        return init_with_filter

    if wrap_once(logger_module.MMLogger, '__init__', make):
        for instance in logger_module.MMLogger._instance_dict.values():  # loggers made before the patch
            instance.addFilter(DropMessages(NOISE['mmengine_log']))


POST_IMPORT_PATCHES = {
    'xtuner.configs': add_shipped_configs,
    'xtuner.utils.device': add_cpu_bf16_query,
    'mmengine.runner.checkpoint': allow_mmengine_checkpoint_classes,
    'xtuner.tools.utils': allow_seed_lookup_in_checkpoints,
    'mmengine.fileio': register_atomic_backend,
    'mmengine.hooks.checkpoint_hook': write_checkpoint_pointer_atomically,
    'mmengine.dist.utils': join_process_group_without_cuda,
    'mmengine._strategy.deepspeed': deepspeed_patches,
    'mmengine.config': redirect_internvl2_pth_to_hf,
    'xtuner.model.sft': skip_remote_config_for_native_llms,
    'xtuner.model.llava': skip_remote_config_for_native_llms,
    'xtuner.entry_point': return_tool_exit_code,
    'bitsandbytes.functional': quiet_bitsandbytes,
    'mmengine.logging.logger': quiet_mmengine_deprecations,
    'deepspeed.utils.logging': quiet_deepspeed_cpu_notice,
    'mmengine.runner.runner': add_run_start_hook,
    'mmengine.runner._flexible_runner': add_run_start_hook,
}


class _PatchingLoader(importlib.abc.Loader):
    """Runs the wrapped loader, then the actions; everything else is delegated."""

    def __init__(self, loader, actions):
        self._loader = loader
        self._actions = actions

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        for action in self._actions:
            action(module)

    def __getattr__(self, name):
        return getattr(self._loader, name)


class _PostImportFinder(importlib.abc.MetaPathFinder):
    """Stock-tool patches (a failure is a warning) and callbacks (``after_import``: errors propagate)."""

    def __init__(self, patches):
        self._patches = patches
        self.callbacks = {}

    def find_spec(self, fullname, path, target=None):
        actions = list(self.callbacks.get(fullname, ()))
        if fullname in self._patches:
            actions.insert(0, functools.partial(_apply, self._patches[fullname]))
        if not actions:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, 'find_spec'):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _PatchingLoader(spec.loader, actions)
                return spec
        return None


def _apply(patch, module) -> None:
    try:
        patch(module)
    except Exception as err:  # a broken patch must not break stock tools
        warnings.warn(f'xtuner_ext could not patch {module.__name__}: {type(err).__name__}: {err}', RuntimeWarning)


def _installed_finder():
    return next((f for f in sys.meta_path if getattr(f, _FINDER_MARK, False)), None)


def install() -> None:
    """Patch the listed modules already imported, and hook the others."""
    for name, patch in POST_IMPORT_PATCHES.items():
        if name in sys.modules:
            _apply(patch, sys.modules[name])
    finder = _installed_finder()
    if finder is not None and not hasattr(finder, 'callbacks'):  # put there by an older copy of this file
        sys.meta_path.remove(finder)
        finder = None
    if finder is None:
        finder = _PostImportFinder(POST_IMPORT_PATCHES)
        setattr(finder, _FINDER_MARK, True)
        sys.meta_path.insert(0, finder)


def importing(packages: tuple) -> bool:
    """Whether a module of ``packages`` is half-way through its import right now."""
    return any(name.partition('.')[0] in packages and getattr(getattr(module, '__spec__', None), '_initializing', False)
               for name, module in list(sys.modules.items()))


def run_at_first_lookup(registry_module, register, imports: tuple) -> None:
    """Make the first ``Registry.get`` (every build and lookup goes through it) call ``register()`` before it
    answers, then put the stock method back. Lookups made while a module of ``imports`` (the packages
    ``register`` imports) is half-imported answer without it: mmengine looks names up while it loads, possibly
    inside the import of the very module ``register`` needs."""
    registry_class = registry_module.Registry

    def make(get):
        @functools.wraps(get)
        def get_after_registering(self, key):
            if not importing(imports):
                registry_class.get = get  # first: register() looks names up itself
                register()
            return get(self, key)
        return get_after_registering

    wrap_once(registry_class, 'get', make)


def after_import(name: str, callback) -> None:
    """Run ``callback(module)`` once module ``name`` is imported: now if it is, else right after it loads.
    Unlike the stock-tool patches, errors propagate: it is the caller's own step that failed."""
    if name in sys.modules:
        callback(sys.modules[name])
        return
    install()
    _installed_finder().callbacks.setdefault(name, []).append(callback)


if __name__ == 'xtuner_ext_boot':  # executed by xtuner_ext_boot.pth
    install()
