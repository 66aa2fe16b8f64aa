"""Every class and function xtuner_ext offers to configs, registered in one place.

Configs may say ``type=InternVL2QLoRA`` (lazy import) or ``type='InternVL2QLoRA'``
with ``custom_imports=dict(imports=['xtuner_ext'])``; the second form resolves
through these registries.
"""
import importlib

# registry name -> dotted paths of the objects registered there under their own name
REGISTERED = {
    'MODELS': [],
    'DATASETS': [],
    'HOOKS': [],
    'MAP_FUNC': [],
}


def _registries():
    from mmengine.registry import DATASETS, HOOKS, MODELS
    from xtuner.registry import MAP_FUNC
    return {'MODELS': MODELS, 'DATASETS': DATASETS, 'HOOKS': HOOKS, 'MAP_FUNC': MAP_FUNC}


def resolve(dotted: str):
    module, _, name = dotted.rpartition('.')
    return getattr(importlib.import_module(module), name)


def register_all() -> None:
    registries = _registries()
    for registry_name, paths in REGISTERED.items():
        registry = registries[registry_name]
        for dotted in paths:
            obj = resolve(dotted)
            if registry.get(obj.__name__) is not obj:
                registry.register_module(name=obj.__name__, module=obj)
