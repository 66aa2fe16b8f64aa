"""xtuner_ext: native InternVL2, QLoRA, CLoT meme data and before/after reports for XTuner.

Importing the package applies the stock-tool patches of ``boot.py`` (in processes that started
without the package's ``.pth`` file) and registers every model, dataset, map function and hook it
offers in the mmengine / XTuner registries (``registration.py``). The registration imports torch, so
it runs as soon as mmengine is loaded (at once, if it already is): the registries cannot be used
before that, and light commands (``xtuner-ext`` printing its usage) stay fast.
"""
from xtuner_ext import boot as _boot
from xtuner_ext.registration import register_all as _register_all

__version__ = '0.1.0'

_boot.install()
_boot.after_import('mmengine', lambda _mmengine: _register_all())
