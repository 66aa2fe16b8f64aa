"""Every class and function xtuner_ext offers to configs, registered in one place.

Configs may say ``type=InternVL2QLoRA`` (lazy import) or ``type='InternVL2QLoRA'``
with ``custom_imports=dict(imports=['xtuner_ext'])``; the second form resolves
through these registries.
"""
import importlib

# registry name -> dotted paths of the objects registered there under their own name
REGISTERED = {
    'MODELS': ['xtuner_ext.models.internvl2_qlora.InternVL2QLoRA'],
    'DATASETS': ['xtuner_ext.data.internvl2_dataset.InternVL2ConversationDataset'],
    'HOOKS': ['xtuner_ext.engine.random_state_hook.RandomStateHook',
              'xtuner_ext.engine.before_after_hook.BeforeAfterChatHook',
              'xtuner_ext.engine.run_start_hook.RunStartHook'],
    'LOOPS': ['xtuner_ext.engine.train_loop.CappedTrainLoop'],
    'DATA_SAMPLERS': ['xtuner_ext.data.batch_sampler.EpochChainBatchSampler'],
    'FUNCTIONS': ['xtuner_ext.data.internvl2_dataset.internvl2_collate_fn',
                  'xtuner_ext.data.packing.internvl2_packed_collate_fn'],
    'MAP_FUNC': [
        'xtuner_ext.data.map_fns.clot_map_fn',
        'xtuner_ext.data.map_fns.oogiri_map_fn',
        'xtuner_ext.data.map_fns.conversation_map_fn',
        'xtuner_ext.data.map_fns.clot_llava_map_fn',
        'xtuner_ext.data.map_fns.oogiri_llava_map_fn',
        'xtuner_ext.data.map_fns.conversation_llava_map_fn',
    ],
}


def _registries():
    from mmengine.registry import DATA_SAMPLERS, DATASETS, FUNCTIONS, HOOKS, LOOPS, MODELS
    from xtuner.registry import MAP_FUNC
    return {'MODELS': MODELS, 'DATASETS': DATASETS, 'HOOKS': HOOKS, 'LOOPS': LOOPS, 'FUNCTIONS': FUNCTIONS,
            'DATA_SAMPLERS': DATA_SAMPLERS, 'MAP_FUNC': MAP_FUNC}


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
