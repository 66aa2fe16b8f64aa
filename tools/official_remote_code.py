"""Flatten the official InternVL2 model code into one folder of remote-code files, for local checks only.

    python tools/official_remote_code.py GIT_DIR [--commit REV] [--out .official/remote_code]

GIT_DIR is a clone (or bare mirror) of github.com/OpenGVLab/InternVL. The files are written with
the relative imports of the Hugging Face checkpoints' remote code, into a git-ignored folder: they
are never committed, and xtuner_ext never needs them (tests that compare against the official
classes skip when the folder is absent). timm is replaced by ``torch.nn.Identity`` for ``DropPath``
(a no-op in eval mode, and drop_path_rate is 0 in every InternVL2 config), and the config class
gets an InternLM2 default for ``llm_config`` so it constructs without arguments, which transformers 5
and LMDeploy require (``../shared/device/README.md``: the training-repo default raises
``Unsupported architecture:``).
"""
import argparse
import re
import subprocess
import sys
from pathlib import Path

from xtuner_ext.fileio import write_atomically

SOURCES = {
    'conversation.py': 'internvl_chat/internvl/conversation.py',
    'configuration_internlm2.py': 'internvl_chat/internvl/model/internlm2/configuration_internlm2.py',
    'modeling_internlm2.py': 'internvl_chat/internvl/model/internlm2/modeling_internlm2.py',
    'tokenization_internlm2.py': 'internvl_chat/internvl/model/internlm2/tokenization_internlm2.py',
    'configuration_phi3.py': 'internvl_chat/internvl/model/phi3/configuration_phi3.py',
    'modeling_phi3.py': 'internvl_chat/internvl/model/phi3/modeling_phi3.py',
    'configuration_intern_vit.py': 'internvl_chat/internvl/model/internvl_chat/configuration_intern_vit.py',
    'modeling_intern_vit.py': 'internvl_chat/internvl/model/internvl_chat/modeling_intern_vit.py',
    'configuration_internvl_chat.py': 'internvl_chat/internvl/model/internvl_chat/configuration_internvl_chat.py',
    'modeling_internvl_chat.py': 'internvl_chat/internvl/model/internvl_chat/modeling_internvl_chat.py',
}
PACKAGE_IMPORT = re.compile(r'^from internvl(?:\.[\w.]+)*\.(\w+) import', re.MULTILINE)
TIMM_DROP_PATH = 'from timm.models.layers import DropPath'
EMPTY_LLM_DEFAULT = "llm_config = {'architectures': ['']}"


def flatten(text: str) -> str:
    text = PACKAGE_IMPORT.sub(r'from .\1 import', text)
    text = text.replace(EMPTY_LLM_DEFAULT, "llm_config = {'architectures': ['InternLM2ForCausalLM']}")
    return text.replace(TIMM_DROP_PATH, 'from torch.nn import Identity as DropPath  # flattened: eval-only copy')


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('git_dir')
    parser.add_argument('--commit', default='2410d1dbf208f0e799459aff9376e5747dbf41a2')
    parser.add_argument('--out', default='.official/remote_code')
    args = parser.parse_args(argv)
    for name, source in SOURCES.items():
        text = subprocess.run(['git', '--git-dir', args.git_dir, 'show', f'{args.commit}:{source}'], check=True,
                              capture_output=True, text=True).stdout
        write_atomically(Path(args.out) / name, flatten(text).encode('utf-8'))
    print(f'{len(SOURCES)} files in {args.out} (official commit {args.commit}; do not commit them)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
