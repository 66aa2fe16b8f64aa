"""Wheel build hook: an editable install gets only the boot ``.pth``.

The standard wheel force-includes ``configs/`` as ``xtuner_ext/configs`` (see
pyproject.toml). An editable install must not: that copy would shadow edits to
the repository's ``configs/``, which ``xtuner_ext.boot.configs_dir`` finds itself.
"""
from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class EditableBootOnly(BuildHookInterface):
    def initialize(self, version, build_data):
        if version == 'editable':
            build_data['force_include_editable'] = {
                'xtuner_ext/xtuner_ext_boot.pth': 'xtuner_ext_boot.pth'}
