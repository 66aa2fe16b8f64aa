"""Every shipped config parses, takes its paths from the environment, and every ``type`` it names
resolves to something whose signature accepts the keys given (torchtune's ``config.validate``)."""
import importlib
import inspect
import json
from pathlib import Path

import pytest
from mmengine.config import Config

import xtuner_ext  # noqa: F401  (registers xtuner_ext's types, as custom_imports does)

REPO = Path(__file__).resolve().parents[2]
INDEX = json.loads((REPO / 'configs' / 'index.json').read_text(encoding='utf-8'))
INTERNVL = sorted(name for name, rel in INDEX.items() if rel.startswith('internvl/'))  # CLoT data, model_path


def registry_for(path):
    """The mmengine registry the runner builds a node at ``path`` from (None: unknown place)."""
    from mmengine import registry as r

    top, last = path[0], path[-1]
    if top == 'model':
        return r.MODELS
    if top == 'train_dataset' or path[-1] == 'dataset':
        return r.DATASETS
    if last in ('sampler', 'batch_sampler'):
        return r.DATA_SAMPLERS
    if last == 'collate_fn':
        return r.FUNCTIONS
    if top == 'optim_wrapper':
        return r.OPTIMIZERS if last == 'optimizer' else r.OPTIM_WRAPPERS
    if top == 'param_scheduler':
        return r.PARAM_SCHEDULERS
    if top == 'train_cfg':
        return r.LOOPS
    if top in ('custom_hooks', 'default_hooks') or top.endswith('_hook'):  # hooks/ fragments name theirs *_hook
        return r.HOOKS
    if len(path) > 1 and path[-2] == 'vis_backends':
        return r.VISBACKENDS
    if top == 'visualizer':
        return r.VISUALIZERS
    if top == 'model_wrapper_cfg':
        return r.MODEL_WRAPPERS
    return None


# Arguments the runner supplies itself when it builds a node at that place.
INJECTED = {'sampler': {'dataset'}, 'batch_sampler': {'sampler', 'batch_size'}, 'train_cfg': {'runner', 'dataloader'}, 'param_scheduler': {'optimizer'},
            'optimizer': {'params'}, 'visualizer': {'save_dir'},  # the runner gives the visualizer its log dir
            'model_wrapper_cfg': {'module'}}


# Keys the builder consumes before calling the type (mmengine's build_scheduler_from_cfg).
BUILDER_KEYS = {'param_scheduler': {'convert_to_iter_based'}}


def injected_for(path):
    for key in (path[-1], path[0]):
        if key in INJECTED:
            return INJECTED[key]
    return set()


def typed_nodes(node, path=()):
    """(path, dict) for every dict with a 'type' key; untyped dicts inside are plain kwargs but are
    searched too (a dataloader dict holds typed dataset/sampler dicts)."""
    if isinstance(node, dict):
        if 'type' in node:
            yield path, node
        for key, value in node.items():
            yield from typed_nodes(value, path + (key,))
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from typed_nodes(value, path + (str(i),))


def resolve(type_, path):
    if not isinstance(type_, str):
        return type_
    if '.' in type_:
        module, _, name = type_.rpartition('.')
        return getattr(importlib.import_module(module), name)
    registry = registry_for(path)
    if registry is None:
        raise LookupError(f'no registry known for a node at {".".join(path)}')
    obj = registry.get(type_)
    if obj is None:
        raise LookupError(f'{type_!r} is not in registry {registry.name}')
    return obj


def named_params_in_mro(obj):
    """Parameter names of ``obj.__init__`` and of every base class's ``__init__`` (for **kwargs)."""
    names = set()
    for klass in getattr(obj, '__mro__', ()):
        if '__init__' in vars(klass) and klass is not object:
            names |= set(inspect.signature(vars(klass)['__init__']).parameters) - {'self', 'args', 'kwargs'}
    return names


def check_node(path, node):
    obj = resolve(node['type'], path)
    kwargs = {k: v for k, v in node.items() if k != 'type' and k not in BUILDER_KEYS.get(path[0], ())}
    if path[-1] == 'collate_fn':  # built as partial(fn, **kwargs), then called with the batch
        inspect.signature(obj).bind(['batch'], **kwargs)
        return
    signature = inspect.signature(obj)
    injected = {name: object() for name in injected_for(path) if name in signature.parameters}
    signature.bind(**injected, **kwargs)
    if any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()) and inspect.isclass(obj):
        unknown = set(kwargs) - named_params_in_mro(obj)
        if unknown:
            raise TypeError(f'{sorted(unknown)} are not parameters of {obj.__name__} or its base classes')


@pytest.fixture
def config_env(monkeypatch, tmp_path):
    model, data = tmp_path / 'model_dir', tmp_path / 'data_root'
    monkeypatch.setenv('XTUNER_EXT_MODEL_PATH', str(model))
    monkeypatch.setenv('XTUNER_EXT_DATA_ROOT', str(data))
    return str(model), str(data)


def test_index_lists_every_config():
    listed = {(REPO / 'configs' / rel).resolve() for rel in INDEX.values()}
    on_disk = {p.resolve() for p in (REPO / 'configs').rglob('*.py')
               if not p.name.startswith('_')}  # _runtime.py: a base, checked through the configs inheriting it
    assert listed == on_disk and all(p.is_file() for p in listed)


@pytest.mark.parametrize('name', INTERNVL)
def test_config_parses_with_env_paths(name, config_env):
    model, data = config_env
    cfg = Config.fromfile(str(REPO / 'configs' / INDEX[name]))
    assert cfg.model.model_path == model == cfg.train_dataloader.dataset.model_path
    dataset = cfg.train_dataloader.dataset
    assert dataset.data_path == data or dataset.data_path.startswith(data + '/')
    assert dataset.image_folder == data
    assert cfg.train_dataloader.dataset == cfg.train_dataset


@pytest.mark.parametrize('name', sorted(INDEX))
def test_every_type_resolves_and_binds(name, config_env):
    cfg = Config.fromfile(str(REPO / 'configs' / INDEX[name]))
    nodes = list(typed_nodes(cfg.to_dict()))
    assert any(p == ('model',) for p, _ in nodes) and any(p[-1] == 'sampler' for p, _ in nodes)
    failures = []
    for path, node in nodes:
        try:
            check_node(path, node)
        except (TypeError, LookupError, ImportError, AttributeError, ValueError) as err:
            failures.append(f'{".".join(path)} ({node["type"]}): {type(err).__name__}: {err}')
    assert not failures, '\n'.join(failures)


def test_checker_catches_wrong_keys():
    """The checker itself fails on the mistakes it is there for."""
    with pytest.raises(TypeError, match='unexpected keyword'):
        check_node(('model',), dict(type='InternVL2QLoRA', model_path='x', lora=dict(r=1)))
    with pytest.raises(TypeError, match=r"\['start_factr'\] are not parameters of LinearLR"):
        check_node(('param_scheduler', '0'), dict(type='LinearLR', start_factr=0.1))
    with pytest.raises(LookupError, match="'NoSuchHook' is not in registry hook"):
        check_node(('custom_hooks', '0'), dict(type='NoSuchHook'))
    with pytest.raises(TypeError, match="missing a required argument: 'per_device_batch_size'"):
        check_node(('train_dataloader', 'sampler'), dict(type='xtuner.dataset.samplers.LengthGroupedSampler'))


@pytest.mark.parametrize('name', INTERNVL)
def test_config_dataset_builds_on_sample_data(name, monkeypatch, tiny_model_dir, sample_dir):
    from mmengine.registry import DATASETS, FUNCTIONS

    monkeypatch.setenv('XTUNER_EXT_MODEL_PATH', str(tiny_model_dir))
    monkeypatch.setenv('XTUNER_EXT_DATA_ROOT', str(sample_dir))
    cfg = Config.fromfile(str(REPO / 'configs' / INDEX[name]))
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    assert len(dataset) in (40, 48) and dataset.skipped == 0
    assert max(dataset.length) <= cfg.max_length
    assert dataset.processor.tiling.max_dynamic_patch == cfg.processor['max_dynamic_patch']
    collate = FUNCTIONS.get(cfg.train_dataloader.collate_fn['type'])
    assert collate([dataset[0]])['data']['input_ids'].shape[0] == 1


def test_tiny_config_model_builds(monkeypatch, tiny_model_dir):
    import bitsandbytes as bnb
    from mmengine.registry import MODELS

    monkeypatch.setenv('XTUNER_EXT_MODEL_PATH', str(tiny_model_dir))
    cfg = Config.fromfile(str(REPO / 'configs' / INDEX['xtuner_ext_internvl2_tiny_qlora']))
    model = MODELS.build(cfg.model)
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    assert model.trainable_names() and all('lora_' in n or n.startswith('model.mlp1.') for n in model.trainable_names())
