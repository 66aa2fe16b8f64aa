"""xtuner_ext: native InternVL2, QLoRA, CLoT meme data and before/after reports for XTuner.

Importing the package registers every model, dataset, map function and hook it
offers in the mmengine / XTuner registries (``registration.py``), and applies
the stock-tool patches of ``boot.py`` in processes that started without the
package's ``.pth`` file.
"""
from xtuner_ext import boot as _boot
from xtuner_ext.registration import register_all as _register_all

__version__ = '0.1.0'

_boot.install()
_register_all()
