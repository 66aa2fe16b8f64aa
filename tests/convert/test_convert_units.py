"""The converter's pieces on real files: checkpoint reading, LoRA fit, key accounting, chat template,
atomic placement, the stock pth_to_hf argument mapping. Fast (no training run)."""
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from xtuner_ext.convert.official_folder import (KeyAccountingError, account_keys, chat_template_jinja,
                                                copy_tokenizer_files, place)
from xtuner_ext.convert.stock_pth_to_hf import converter_argv
from xtuner_ext.convert.trained_state import CheckpointMismatchError, check_lora_fits, read_trained_state
from xtuner_ext.models.internvl2 import get_template, load_tokenizer

LLM = 'model.language_model.base_model.model.model.layers.{}.self_attn.{}.lora_{}.default.weight'


def lora_state(r=4, targets=('q_proj', 'v_proj'), layers=2):
    state = {'model.mlp1.1.weight': torch.randn(8, 8)}
    for layer in range(layers):
        for target in targets:
            state[LLM.format(layer, target, 'A')] = torch.randn(r, 16)
            state[LLM.format(layer, target, 'B')] = torch.randn(16, r)
    return state


def test_reads_an_mmengine_checkpoint_and_a_deepspeed_folder(tmp_path):
    state = lora_state()
    torch.save({'meta': {'iter': 3}, 'state_dict': state}, tmp_path / 'iter_3.pth')
    (tmp_path / 'ds' / 'checkpoint').mkdir(parents=True)
    torch.save({'module': state, 'dp_world_size': 1}, tmp_path / 'ds' / 'checkpoint' / 'mp_rank_00_model_states.pt')
    for source in (tmp_path / 'iter_3.pth', tmp_path / 'ds'):
        read = read_trained_state(source)
        assert read.keys() == state.keys() and all(torch.equal(read[k], state[k]) for k in state)


def test_a_truncated_checkpoint_is_named(tmp_path):
    torch.save({'state_dict': lora_state()}, tmp_path / 'full.pth')
    data = (tmp_path / 'full.pth').read_bytes()
    (tmp_path / 'cut.pth').write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointMismatchError, match=r'cut\.pth cannot be read .*truncated'):
        read_trained_state(tmp_path / 'cut.pth')


def test_a_folder_without_deepspeed_states_is_named(tmp_path):
    with pytest.raises(CheckpointMismatchError, match='holds 0 mp_rank_00_model_states.pt'):
        read_trained_state(tmp_path)


@pytest.mark.parametrize('lora, message', [
    (dict(r=8, target_modules=['q_proj', 'v_proj']), r'LLM LoRA rank: checkpoint r=\[4\] but the config says r=8'),
    (dict(r=4, target_modules=['q_proj', 'k_proj', 'v_proj']), r"targets \['k_proj'\] that the checkpoint does not"),
    (dict(r=4, target_modules=['q_proj']), r"checkpoint adapts \['v_proj'\] that the config does not target"),
    (None, 'the checkpoint has LoRA on 4 LLM module'),
])
def test_lora_that_does_not_fit_the_config_is_named(lora, message):
    with pytest.raises(CheckpointMismatchError, match=message):
        check_lora_fits(lora_state(), lora, 'LLM', 'model.language_model.')


def test_matching_lora_passes():
    check_lora_fits(lora_state(), dict(r=4, target_modules=['q_proj', 'v_proj']), 'LLM', 'model.language_model.')


def test_key_accounting_lists_missing_and_unexpected(tmp_path, repo_root):
    base = repo_root / 'tests' / 'fixtures' / 'internvl2_tiny'
    tensors = load_file(str(base / 'model.safetensors'))
    dropped = sorted(tensors)[0]
    tensors['extra.weight'] = tensors.pop(dropped)
    save_file(tensors, str(tmp_path / 'model.safetensors'))
    with pytest.raises(KeyAccountingError, match=rf"1 missing \['{dropped}'\], 1 unexpected \['extra.weight'\]"):
        account_keys(base, tmp_path)
    assert account_keys(base, base) == len(tensors)


@pytest.mark.parametrize('name', ['internlm2-chat', 'phi3-chat'])
def test_chat_template_renders_the_training_prompt(name, tmp_path, repo_root):
    template = get_template(name)
    copy_tokenizer_files(repo_root / 'tests' / 'fixtures' / 'internvl2_tiny', tmp_path,
                         chat_template_jinja(template, 'be brief'))
    tokenizer = load_tokenizer(tmp_path)
    turns = [('<image>\nwhat is this?', 'a cat'), ('and the colour?', None)]
    messages = [{'role': 'user', 'content': turns[0][0]}, {'role': 'assistant', 'content': turns[0][1]},
                {'role': 'user', 'content': turns[1][0]}]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered == template.render(turns, 'be brief')
    system = [{'role': 'system', 'content': 'other'}] + messages
    assert tokenizer.apply_chat_template(system, tokenize=False, add_generation_prompt=True) == \
        template.render(turns, 'other')


def test_tokenizer_files_are_copied_verbatim_but_for_the_template(tmp_path, repo_root):
    base = repo_root / 'tests' / 'fixtures' / 'internvl2_tiny'
    copied = copy_tokenizer_files(base, tmp_path, 'T')
    assert copied == ['special_tokens_map.json', 'tokenizer.json', 'tokenizer_config.json']
    assert (tmp_path / 'tokenizer.json').read_bytes() == (base / 'tokenizer.json').read_bytes()
    written = json.loads((tmp_path / 'tokenizer_config.json').read_text(encoding='utf-8'))
    original = json.loads((base / 'tokenizer_config.json').read_text(encoding='utf-8'))
    assert written.pop('chat_template') == 'T' and written == {k: v for k, v in original.items()
                                                               if k != 'chat_template'}


def test_placing_refuses_an_existing_folder_without_overwrite(tmp_path):
    for name, text in (('new', 'new'), ('out', 'old')):
        (tmp_path / name).mkdir()
        (tmp_path / name / 'f').write_text(text)
    with pytest.raises(FileExistsError, match='pass --overwrite'):
        place(tmp_path / 'new', tmp_path / 'out', overwrite=False)
    assert (tmp_path / 'out' / 'f').read_text() == 'old'
    place(tmp_path / 'new', tmp_path / 'out', overwrite=True)
    assert (tmp_path / 'out' / 'f').read_text() == 'new' and sorted(p.name for p in tmp_path.iterdir()) == ['out']


def test_stock_pth_to_hf_arguments_map_onto_the_converter():
    assert converter_argv('cfg.py', ['name', 'iter_3.pth', 'out', '--fp32', '--max-shard-size', '2GB']) == \
        ['cfg.py', 'iter_3.pth', 'out', '--max-shard-size', '2GB', '--dtype', 'float32']
    with pytest.raises(SystemExit, match='--cfg-options is not supported'):
        converter_argv('cfg.py', ['name', 'iter_3.pth', 'out', '--cfg-options', 'a=1'])


def test_convert_keeps_the_stock_modes_and_adds_ours():
    import subprocess
    import sys
    from pathlib import Path

    cli = str(Path(sys.executable).parent / 'xtuner-ext')
    stock = subprocess.run([cli, 'convert', 'split', '--help'], capture_output=True, text=True)
    helps = subprocess.run([cli, 'convert', '--help'], capture_output=True, text=True)
    ours = subprocess.run([cli, 'convert', 'config.py'], capture_output=True, text=True)
    assert stock.returncode == 0 and 'usage: split.py' in stock.stdout
    assert helps.returncode == 0 and 'pth_to_hf' in helps.stdout + helps.stderr
    assert 'xtuner-ext convert CONFIG CHECKPOINT SAVE_DIR' in helps.stdout
    assert ours.returncode == 2 and 'usage: xtuner-ext convert-official' in ours.stderr  # our parser


def test_writing_shows_one_progress_step_per_shard_and_writes_the_same_files(tmp_path, repo_root, capfd):
    """The converter's writing step reports each shard on stderr; the bytes are those of a silent save."""
    import hashlib

    from xtuner_ext.convert.official_folder import write_official_folder
    from xtuner_ext.models.internvl2 import InternVL2Processor, InternVLChatModel

    base = repo_root / 'tests' / 'fixtures' / 'internvl2_tiny'
    model, processor = InternVLChatModel.from_pretrained(base), InternVL2Processor.from_pretrained(base)
    model.save_pretrained(tmp_path / 'silent', max_shard_size=100_000)
    assert 'writing shards' not in capfd.readouterr().err
    written = write_official_folder(model, processor, base, tmp_path / 'converted', model.dtype, '100KB')
    shards = sorted(p.name for p in (tmp_path / 'silent').glob('*.safetensors'))
    assert written['shards'] == len(shards) > 1
    err = capfd.readouterr().err
    assert 'writing shards: 100%' in err and f'| {len(shards)}/{len(shards)} [' in err
    sha = lambda path: hashlib.sha256(path.read_bytes()).hexdigest()  # noqa: E731
    for name in shards + ['model.safetensors.index.json']:
        assert sha(tmp_path / 'converted' / name) == sha(tmp_path / 'silent' / name), name
