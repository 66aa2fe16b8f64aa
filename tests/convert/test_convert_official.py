"""The converter on a real tiny `xtuner train` run (CPU, minutes): one training run and one conversion
shared by the module; every check reads the files the converter wrote."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from xtuner_ext.convert.convert_cli import REPORT_NAME, main as convert_main

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / 'configs' / 'internvl' / 'internvl2_tiny_qlora.py'
BIN = Path(sys.executable).parent
SAMPLES = 2  # held-out inputs checked per conversion (each costs a few CPU seconds per model)


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    """A 3-iteration QLoRA run of the tiny config on the embedded-style model and sample."""
    from xtuner_ext.data.sample import make_clot_sample
    from xtuner_ext.models.internvl2.tiny import make_tiny_model

    root = tmp_path_factory.mktemp('convert')
    env = dict(XTUNER_EXT_MODEL_PATH=str(make_tiny_model(root / 'internvl2_tiny', seed=0)),
               XTUNER_EXT_DATA_ROOT=str(make_clot_sample(root / 'CLoT_sample', seed=0)))
    result = subprocess.run([str(BIN / 'xtuner'), 'train', str(CONFIG), '--work-dir', str(root / 'work'),
                             '--cfg-options', 'train_cfg.iter_cap=3'], env=dict(os.environ, **env),
                            capture_output=True, text=True)
    checkpoint = root / 'work' / 'iter_3.pth'
    assert checkpoint.is_file(), result.stdout[-3000:] + result.stderr[-3000:]
    os.environ.update(env)  # the config reads its paths from the environment
    return root, checkpoint


@pytest.fixture(scope='module')
def converted(run):
    root, checkpoint = run
    out = root / 'converted'
    assert convert_main([str(CONFIG), str(checkpoint), str(out), '--check-samples', str(SAMPLES)]) == 0
    return out


def test_folder_has_the_official_layout(converted, run):
    names = sorted(p.name for p in converted.iterdir())
    assert names == ['config.json', REPORT_NAME, 'generation_config.json', 'model.safetensors',
                     'special_tokens_map.json', 'tokenizer.json', 'tokenizer_config.json']
    config = json.loads((converted / 'config.json').read_text(encoding='utf-8'))
    assert config['use_llm_lora'] == 0 and config['use_backbone_lora'] == 0
    # the folder keeps the tiling the config trained with (the base folder says 6)
    from mmengine.config import Config
    trained = Config.fromfile(str(CONFIG)).processor['max_dynamic_patch']
    assert trained != 6 and config['max_dynamic_patch'] == trained and config['dynamic_image_size']
    assert config['torch_dtype'] == 'bfloat16' and config['auto_map']['AutoModel']
    base = Path(os.environ['XTUNER_EXT_MODEL_PATH'])
    generation = json.loads((converted / 'generation_config.json').read_text(encoding='utf-8'))
    assert generation.pop('eos_token_id') == [2, 448]  # </s>, then <|im_end|> where chat() stops
    assert generation == json.loads((base / 'generation_config.json').read_text(encoding='utf-8'))
    assert 'chat_template' in json.loads((converted / 'tokenizer_config.json').read_text(encoding='utf-8'))
    assert not list(converted.parent.glob('.converted.*')), 'the staging folder was left behind'


def test_reloaded_folder_answers_exactly_as_the_merged_model(converted):
    report = json.loads((converted / REPORT_NAME).read_text(encoding='utf-8'))
    assert report['reload'] == dict(samples=SAMPLES, max_logit_diff=0.0, mean_logit_diff=0.0, answers_agree=SAMPLES,
                                    agreement=1.0)
    assert report['written']['keys'] == 55 and report['written']['shards'] == 1
    drift = report['drift']
    assert drift['samples'] == SAMPLES and drift['max_logit_diff'] > 0  # 4-bit base vs bf16 base: not zero
    assert all(p['merged'] for p in report['probes'])


def test_chat_command_on_the_converted_folder_gives_the_merged_answer(converted):
    probe = json.loads((converted / REPORT_NAME).read_text(encoding='utf-8'))['probes'][0]
    result = subprocess.run([str(BIN / 'xtuner-ext'), 'chat', str(converted), '--image', probe['image'],
                             '--question', probe['question'], '--max-new-tokens', '24'],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == f"USER: {probe['question']}\nASSISTANT: {probe['merged']}\n"


def test_merged_weights_are_base_plus_lora_delta(converted, run):
    from xtuner_ext.convert.trained_state import read_trained_state
    from xtuner_ext.models.internvl2 import InternVLChatModel

    _, checkpoint = run
    state = read_trained_state(checkpoint)
    base = InternVLChatModel.from_pretrained(os.environ['XTUNER_EXT_MODEL_PATH'], torch_dtype=torch.float32)
    merged = InternVLChatModel.from_pretrained(converted, torch_dtype=torch.bfloat16)
    base_weights, merged_weights = base.state_dict(), merged.state_dict()
    scaling = 64 / 32  # the tiny config: lora_alpha / r
    prefix = 'model.language_model.base_model.model.'
    adapted = [k[len(prefix):-len('.lora_A.default.weight')] for k in state if k.endswith('.lora_A.default.weight')]
    assert len(adapted) == 2 * 7  # 2 layers x 7 projections
    changed = 0
    for module in adapted:
        lora_a, lora_b = (state[f'{prefix}{module}.lora_{x}.default.weight'] for x in 'AB')
        key = f'language_model.{module}.weight'
        expected = (base_weights[key] + scaling * lora_b @ lora_a).to(torch.bfloat16)
        torch.testing.assert_close(merged_weights[key], expected, rtol=0, atol=0)
        changed += not torch.equal(merged_weights[key], base_weights[key].to(torch.bfloat16))
    assert changed == len(adapted), 'some adapters were not merged (their delta vanished)'
    for key in (k for k in state if k.startswith('model.mlp1.')):  # the trained projector, not the base one
        torch.testing.assert_close(merged_weights[key[len('model.'):]], state[key].to(torch.bfloat16), rtol=0, atol=0)
    untouched = 'language_model.model.embed_tokens.weight'
    assert torch.equal(merged_weights[untouched], base_weights[untouched].to(torch.bfloat16))


def write_config(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(f"_base_ = ['{CONFIG}']\n{body}\n", encoding='utf-8')
    return path


@pytest.mark.parametrize('body, message', [
    ('model = dict(llm_lora=dict(r=16, lora_alpha=32))', r'LLM LoRA rank: checkpoint r=\[32\] but the config says r=16'),
    ("model = dict(llm_lora=dict(target_modules=['q_proj', 'v_proj']))",
     r"the checkpoint adapts \['down_proj', 'gate_proj', 'k_proj', 'o_proj', 'up_proj'\] that the config does not"),
])
def test_a_checkpoint_of_another_lora_config_is_refused(run, tmp_path, capsys, body, message):
    _, checkpoint = run
    config = write_config(tmp_path, 'other.py', body)
    assert convert_main([str(config), str(checkpoint), str(tmp_path / 'out')]) == 1
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / 'out').exists()


def test_a_checkpoint_of_another_base_model_is_refused(run, tmp_path, capsys):
    from xtuner_ext.models.internvl2.tiny import make_tiny_model

    _, checkpoint = run
    other = make_tiny_model(tmp_path / 'wider', seed=0, llm_hidden=128)
    assert convert_main([str(CONFIG), str(checkpoint), str(tmp_path / 'out'), '--base-model', str(other)]) == 1
    err = capsys.readouterr().err
    assert f'was not trained on the base model {other}' in err and 'with other shapes' in err
    assert 'lora_A' in err and not (tmp_path / 'out').exists()


def test_a_truncated_checkpoint_is_refused(run, tmp_path, capsys):
    _, checkpoint = run
    data = checkpoint.read_bytes()
    (tmp_path / 'iter_3.pth').write_bytes(data[:len(data) - 4096])
    assert convert_main([str(CONFIG), str(tmp_path / 'iter_3.pth'), str(tmp_path / 'out')]) == 1
    assert 'truncated or not a PyTorch checkpoint' in capsys.readouterr().err


def test_an_existing_save_dir_is_kept_without_overwrite(converted, run, capsys):
    _, checkpoint = run
    before = (converted / 'model.safetensors').stat().st_mtime_ns
    assert convert_main([str(CONFIG), str(checkpoint), str(converted)]) == 1
    assert 'already exists; pass --overwrite' in capsys.readouterr().err
    assert (converted / 'model.safetensors').stat().st_mtime_ns == before


def test_stock_pth_to_hf_runs_this_converter(run, tmp_path):
    _, checkpoint = run
    result = subprocess.run([str(BIN / 'xtuner'), 'convert', 'pth_to_hf', 'xtuner_ext_internvl2_tiny_qlora',
                             str(checkpoint), str(tmp_path / 'hf'), '--fp32'], capture_output=True, text=True)
    assert 'xtuner-ext convert-official' in result.stderr, result.stderr[-3000:]
    assert "has no attribute 'llm'" not in result.stderr
    config = json.loads((tmp_path / 'hf' / 'config.json').read_text(encoding='utf-8'))
    assert config['torch_dtype'] == 'float32' and (tmp_path / 'hf' / REPORT_NAME).is_file()


OFFICIAL_CODE = REPO / '.official' / 'remote_code'


@pytest.mark.skipif(not (OFFICIAL_CODE / 'modeling_internvl_chat.py').is_file(),
                    reason='the official InternVL code is not available locally (as in CI); create it with '
                           'python tools/official_remote_code.py <clone of OpenGVLab/InternVL>')
def test_official_code_loads_the_converted_folder_strictly_and_answers_alike(run, tmp_path):
    """A base folder that carries the official remote code: the converter copies it, transformers'
    AutoModel(trust_remote_code=True) loads the result with no missing/unexpected keys, and the
    official chat() gives our native chat()'s greedy answer."""
    import shutil

    from transformers import AutoModel, AutoTokenizer

    from xtuner_ext.models.internvl2 import InternVL2Processor, InternVLChatModel

    _, checkpoint = run
    base = Path(shutil.copytree(os.environ['XTUNER_EXT_MODEL_PATH'], tmp_path / 'base_with_code'))
    for file in OFFICIAL_CODE.glob('*.py'):
        shutil.copy(file, base / file.name)
    out = tmp_path / 'converted'
    assert convert_main([str(CONFIG), str(checkpoint), str(out), '--base-model', str(base), '--check-samples', '1']) == 0
    assert sorted(p.name for p in out.glob('*.py')) == sorted(p.name for p in OFFICIAL_CODE.glob('*.py'))

    official, info = AutoModel.from_pretrained(str(out), trust_remote_code=True, torch_dtype=torch.float32,
                                               output_loading_info=True)
    assert info['missing_keys'] == [] and not info['unexpected_keys'] and info['mismatched_keys'] == []
    probe = json.loads((out / REPORT_NAME).read_text(encoding='utf-8'))['probes'][0]
    pixel_values = InternVL2Processor.from_pretrained(out).pixel_values(probe['image']).float()
    generation = dict(max_new_tokens=24, do_sample=False)
    tokenizer = AutoTokenizer.from_pretrained(str(out), trust_remote_code=True, use_fast=False)
    expected = official.eval().chat(tokenizer, pixel_values, probe['question'], dict(generation))
    native = InternVLChatModel.from_pretrained(out, torch_dtype=torch.float32)
    assert native.chat(tokenizer, pixel_values, probe['question'], dict(generation)) == expected


def test_demo_ends_with_an_answer_from_the_converted_folder(run, tmp_path, capsys):
    from xtuner_ext.convert.demo_step import convert_and_answer, first_heldout

    _, checkpoint = run
    data_dir = Path(os.environ['XTUNER_EXT_DATA_ROOT'])
    assert convert_and_answer(CONFIG, checkpoint, tmp_path / 'converted', data_dir) == 0
    image, _ = first_heldout(data_dir)
    report = json.loads((tmp_path / 'converted' / REPORT_NAME).read_text(encoding='utf-8'))
    assert report['probes'][0]['image'] == image  # the first held-out record, as the demo asks it
    assert f"held-out image {Path(image).name}: {report['probes'][0]['merged']!r}" in capsys.readouterr().out
