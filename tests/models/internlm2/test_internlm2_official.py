"""The merged assistant folder loads in the official InternLM2 code too (same logits as our loader).

Runs where the official remote code is available locally and git-ignored: put
``configuration_internlm2.py`` and ``modeling_internlm2.py`` (OpenGVLab/InternVL
``internvl_chat/internvl/model/internlm2/``, the commit in tests/fixtures/internvl2_tiny/README.md)
in ``.official/internlm2/``. They are copied into a temporary copy of the folder, never committed.
"""
import shutil
from pathlib import Path

import pytest
import torch

OFFICIAL = Path(__file__).resolve().parents[3] / '.official' / 'internlm2'
FILES = ('configuration_internlm2.py', 'modeling_internlm2.py')

pytestmark = pytest.mark.skipif(not all((OFFICIAL / f).is_file() for f in FILES),
                                reason=f'official InternLM2 code not in {OFFICIAL}')


def test_merged_folder_loads_in_the_official_code(tiny_internlm2_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from xtuner_ext.models.internlm2 import load_internlm2
    from xtuner_ext.models.internlm2.merge import merge_internlm2_adapter

    lora = get_peft_model(load_internlm2(tiny_internlm2_dir, torch_dtype='float32'),
                          LoraConfig(r=4, target_modules=['q_proj', 'v_proj', 'down_proj'], init_lora_weights=False))
    lora.save_pretrained(str(tmp_path / 'adapter'))
    merged = merge_internlm2_adapter(tiny_internlm2_dir, tmp_path / 'adapter', tmp_path / 'merged',
                                     torch_dtype='float32')
    with_code = shutil.copytree(merged, tmp_path / 'with_code')
    for name in FILES:
        shutil.copyfile(OFFICIAL / name, with_code / name)
    official = AutoModelForCausalLM.from_pretrained(str(with_code), trust_remote_code=True,
                                                    torch_dtype=torch.float32).eval()
    ids = torch.tensor([[1, 449, 30, 31, 448, 12, 449, 40, 41, 42]])
    with torch.no_grad():
        torch.testing.assert_close(load_internlm2(merged)(ids).logits, official(ids).logits, atol=1e-4, rtol=1e-4)
