"""xtuner_ext: native InternVL2, QLoRA, CLoT meme data and before/after reports for XTuner.

Importing the package applies the stock-tool patches of ``boot.py`` (in processes that started
without the package's ``.pth`` file) and registers every model, dataset, map function and hook it
offers in the mmengine / XTuner registries (``registration.py``). The registration imports torch and
the whole package, so it runs at the first registry lookup (``MODELS.build``, ``HOOKS.get``...): the
import itself stays light (``xtuner-ext`` prints its usage at once) and never runs half-way through
the import of one of the package's own modules.
"""
from xtuner_ext import boot as _boot
from xtuner_ext.registration import register_all as _register_all

__version__ = '0.1.0'

_boot.install()
_boot.after_import('mmengine.registry.registry', lambda module: _boot.run_at_first_lookup(
    module, _register_all, imports=('xtuner_ext', 'mmengine', 'xtuner')))
