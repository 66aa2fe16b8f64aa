"""The page's pieces without a browser: folder errors, input checks, settings, streamed turns."""
import shutil

import pytest
from PIL import Image

from web_helpers import native_chat
from xtuner_ext.web.inputs import GenerationSettings, InputError, check_image, check_question
from xtuner_ext.web.loading import ModelFolderError, load_chat_model, load_slot
from xtuner_ext.web.streaming import stream_turn


def test_missing_folder_becomes_a_slot_with_a_message(tmp_path):
    slot = load_slot('Fine-tuned', tmp_path / 'converted')
    assert not slot.ready
    assert str(tmp_path / 'converted') in slot.error and 'does not exist' in slot.error
    assert 'official layout' in slot.error


def test_truncated_weights_name_the_folder(base_dir, tmp_path):
    broken = tmp_path / 'broken'
    shutil.copytree(base_dir, broken)
    weights = broken / 'model.safetensors'
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ModelFolderError, match=f'model folder {broken} cannot be loaded'):
        load_chat_model(broken)


def test_folder_without_config_is_refused(tmp_path):
    (tmp_path / 'model.safetensors').write_bytes(b'')
    with pytest.raises(ModelFolderError, match='has no config.json'):
        load_chat_model(tmp_path)


@pytest.mark.parametrize('question', ['', '   \n', None])
def test_empty_question_is_refused(question):
    with pytest.raises(InputError, match='The question is empty'):
        check_question(question)


def test_picture_checks(tmp_path):
    with pytest.raises(InputError, match='No picture'):
        check_image(None, needs_image=True)
    check_image(None, needs_image=False)  # a text-only model answers without one
    huge = tmp_path / 'huge.png'
    Image.new('RGB', (1200, 1000), 'white').save(huge)
    with pytest.raises(InputError, match=r'1200x1000 = 1\.2 megapixels; this page accepts up to 1\.0'):
        check_image(str(huge), needs_image=True, max_pixels=1_000_000)
    check_image(str(huge), needs_image=True, max_pixels=1_200_000)
    not_a_picture = tmp_path / 'notes.png'
    not_a_picture.write_text('hello')
    with pytest.raises(InputError, match='notes.png is not a picture'):
        check_image(str(not_a_picture), needs_image=True)


def test_generation_settings():
    assert GenerationSettings(32).generation_config() == dict(max_new_tokens=32, do_sample=False)
    sampling = GenerationSettings(32, True, 0.5, 0.8).generation_config()
    assert sampling == dict(max_new_tokens=32, do_sample=True, temperature=0.5, top_p=0.8)
    with pytest.raises(InputError, match='temperature > 0'):
        GenerationSettings(32, True, 0.0, 0.8).generation_config()


def test_streamed_turns_equal_native_chat(base_dir, web_sample_dir, heldout_record):
    image = web_sample_dir / heldout_record['image']
    questions = ['这张图片里有什么？', '再讲一个梗']
    expected = native_chat(base_dir, image, questions, max_new_tokens=12)
    chat_model = load_chat_model(base_dir)
    pixel_values = chat_model.pixel_values(image)
    history = []
    for question, answer in zip(questions, expected):
        steps = list(stream_turn(chat_model, pixel_values, question, history, dict(max_new_tokens=12,
                                                                                      do_sample=False)))
        partials, (final, history) = [text for text, h in steps if h is None], steps[-1]
        assert final == answer
        assert len(partials) >= 2 and partials[-1].strip() == answer  # streamed, growing into the answer
        assert all(later.startswith(earlier) for earlier, later in zip(partials, partials[1:]))
    assert [q for q, _ in history] == ['<image>\n' + questions[0], questions[1]]


TINY_CONFIG = 'configs/internvl/internvl2_tiny_qlora.py'


@pytest.fixture
def trained_checkpoint(base_dir, web_sample_dir, repo_root, monkeypatch, tmp_path):
    """A trainable-state checkpoint of the tiny config whose LoRA and projector were nudged, as
    training would, so the fine-tune answers differ from the base; and that model's own chat()."""
    import torch
    from mmengine.config import Config
    from mmengine.registry import MODELS

    import xtuner_ext  # noqa: F401

    monkeypatch.setenv('XTUNER_EXT_MODEL_PATH', str(base_dir))
    monkeypatch.setenv('XTUNER_EXT_DATA_ROOT', str(web_sample_dir))
    config = repo_root / TINY_CONFIG
    trained = MODELS.build(Config.fromfile(str(config)).model).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in trained.named_parameters():
            if param.requires_grad:
                param.add_(torch.randn(param.shape, generator=generator) * 0.5)
    checkpoint = tmp_path / 'iter_1.pth'
    torch.save({'state_dict': trained.state_dict()}, checkpoint)
    return config, checkpoint, trained


def test_config_and_checkpoint_stream_what_the_trained_model_answers(trained_checkpoint, web_sample_dir,
                                                                      heldout_record):
    from xtuner_ext.web.loading import load_trained_model

    config, checkpoint, trained = trained_checkpoint
    image, question, greedy = web_sample_dir / heldout_record['image'], '这张图片里有什么？', dict(max_new_tokens=12)
    expected = trained.chat(str(image), question, generation_config=dict(greedy, do_sample=False))
    chat_model = load_trained_model(config, checkpoint)
    *_, (answer, _) = stream_turn(chat_model, chat_model.pixel_values(image), question, [],
                                  dict(greedy, do_sample=False))
    assert answer == expected
    assert expected != native_chat(trained.model_path, image, [question], 12)[0]  # really the fine-tune
    assert len(chat_model.pixel_values(image)) == trained.processor.num_tiles(Image.open(image).size)


def test_checkpoint_of_another_model_is_a_message(trained_checkpoint, tmp_path):
    import torch

    from xtuner_ext.web.loading import load_trained_slot

    config, _, _ = trained_checkpoint
    wrong = tmp_path / 'wrong.pth'
    torch.save({'state_dict': {'model.mlp1.0.weight': torch.zeros(3)}}, wrong)
    slot = load_trained_slot('Fine-tuned', config, wrong)
    assert not slot.ready and f'{wrong} with {config} cannot be loaded' in slot.error
    assert 'checkpoint does not fit' in slot.error
    assert 'does not exist' in load_trained_slot('Fine-tuned', config, tmp_path / 'iter_9.pth').error


def test_demo_hint_is_a_command_the_parser_accepts(tmp_path):
    import shlex
    from pathlib import Path

    from xtuner_ext.web.launch import open_hint, parse_args

    hint = open_hint(tmp_path / 'internvl2_tiny', Path('configs/internvl/internvl2_tiny_qlora.py'),
                     tmp_path / 'iter_100.pth', tmp_path / 'heldout.json')
    command = shlex.split(hint.splitlines()[1])
    assert command[0] == f'XTUNER_EXT_MODEL_PATH={tmp_path / "internvl2_tiny"}'
    assert command[1:3] == ['xtuner-ext', 'web']
    args = parse_args(command[3:])
    assert args.base == str(tmp_path / 'internvl2_tiny') and args.checkpoint == str(tmp_path / 'iter_100.pth')
    assert args.examples == str(tmp_path / 'heldout.json')
    assert args.host == '127.0.0.1' and 'http://127.0.0.1:7860' in hint
    with pytest.raises(SystemExit):
        parse_args(['base', '--config', 'c.py'])  # --checkpoint missing


def test_unreadable_examples_file_stops_the_command_with_a_message(tmp_path, capsys):
    from xtuner_ext.web.launch import main

    assert main([str(tmp_path / 'model'), '--examples', str(tmp_path / 'heldout.json')]) == 2
    assert f'--examples {tmp_path / "heldout.json"}: ' in capsys.readouterr().err
