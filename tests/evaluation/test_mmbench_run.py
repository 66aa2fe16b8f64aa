"""Real runs of ``xtuner-ext mmbench`` with the official tiny InternVL2 checkpoint: answers as the
official ``chat``, the files a run leaves, resumption after a kill, corrupt rows, before/after."""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from xtuner_ext.evaluation.mmbench import build_question, read_mmbench_tsv, score
from xtuner_ext.evaluation.mmbench.cli import main

# One tile per image and three new tokens: the 2-core CPU answers a row in about a second.
QUICK = ['--no-dynamic', '--max-new-tokens', '3', '--torch-dtype', 'float32', '--device', 'cpu', '--no-progress']


def run(model, tsv, work_dir, *extra):
    return main([str(model), '--data-path', str(tsv), '--work-dir', str(work_dir), *QUICK, *extra])


def lines(path):
    return path.read_text(encoding='utf-8').splitlines()


@pytest.fixture(scope='module')
def finished(tiny_model, dev_tsv, tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('mmbench_run')
    assert run(tiny_model, dev_tsv, work_dir, '--limit', '3') == 0
    return work_dir


def test_answers_are_the_official_chat_answers(tiny_model, dev_tsv):
    from xtuner_ext.evaluation.mmbench.answering import InternVL2Answerer

    answerer = InternVL2Answerer.from_folder(tiny_model, torch_dtype='float32', max_num=2,
                                             max_new_tokens=6)
    # a wide picture: 2 tiles + thumbnail (max_num=2, the checkpoint's use_thumbnail)
    row = next(r for r in read_mmbench_tsv(dev_tsv).rows if answerer.processor.num_tiles(r.decode_image().size) == 3)
    question, image = build_question(row, 'en'), row.decode_image()
    pixel_values = answerer.processor.pixel_values(image)
    official = answerer.model.chat(answerer.processor.tokenizer, pixel_values, question,
                                   dict(max_new_tokens=6, min_new_tokens=1, num_beams=1, do_sample=False))
    assert answerer.answer(image, question) == official != ''


def test_a_run_writes_predictions_xlsx_and_result(finished, dev_tsv, capsys):
    records = [json.loads(line) for line in lines(finished / 'predictions.jsonl')]
    rows = read_mmbench_tsv(dev_tsv).rows[:3]
    assert [r['index'] for r in records] == [0, 1, 2]
    assert [r['question'] for r in records] == [build_question(row, 'en') for row in rows]
    result = json.loads((finished / 'result.json').read_text(encoding='utf-8'))
    assert result['answered'] == 3 and result['split'] == 'dev' and result['language'] == 'en'
    assert result['vanilla'] == score(rows, {r['index']: r for r in records})['vanilla']
    assert result['unmatched'] == sum(r['letter'] is None for r in records)
    sheet = pd.read_excel(finished / 'MMBench_DEV_EN_sample.xlsx')
    assert list(sheet['index']) == [0, 1, 2]
    settings = json.loads((finished / 'run.json').read_text())
    assert settings['tiling'].startswith('TilingSpec(image_size=448, dynamic_image_size=False')
    assert settings['data_sha256'] == hashlib.sha256(dev_tsv.read_bytes()).hexdigest()
    assert result['this_run']['answered'] == 3 and result['this_run']['rows_per_second'] > 0


def test_run_settings_are_written_once_then_enforced(tmp_path):
    from xtuner_ext.evaluation.mmbench.runner import check_run_settings

    path = tmp_path / 'run.json'
    check_run_settings(path, {'data_sha256': 'aa', 'language': 'en'})
    check_run_settings(path, {'data_sha256': 'aa', 'language': 'en'})  # same settings: resume
    with pytest.raises(ValueError, match=r"other settings \(data_sha256 differ: \{'data_sha256': 'aa'\} -> "
                                         r"\{'data_sha256': 'bb'\}\); pass another --work-dir"):
        check_run_settings(path, {'data_sha256': 'bb', 'language': 'en'})


def test_a_rerun_answers_nothing_again_and_refuses_other_settings(finished, tiny_model, dev_tsv, capsys):
    before = (finished / 'predictions.jsonl').read_bytes()
    assert run(tiny_model, dev_tsv, finished, '--limit', '3') == 0
    assert 'resuming: 3 of 3 answers already' in capsys.readouterr().err
    assert (finished / 'predictions.jsonl').read_bytes() == before
    assert run(tiny_model, dev_tsv, finished, '--limit', '3', '--language', 'cn') == 1
    err = capsys.readouterr().err
    assert 'holds answers made with other settings (language differ' in err and 'pass another --work-dir' in err


def test_a_killed_run_resumes_where_it_stopped(tiny_model, dev_tsv, tmp_path, capsys):
    work_dir, log = tmp_path / 'killed', tmp_path / 'killed' / 'predictions.jsonl'
    command = [sys.executable, '-m', 'xtuner_ext.cli', 'mmbench', str(tiny_model), '--data-path', str(dev_tsv),
               '--work-dir', str(work_dir), *QUICK, '--limit', '8']
    child = subprocess.Popen(command, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while not (log.is_file() and log.read_text(encoding='utf-8').count('\n') >= 2):
        assert child.poll() is None, child.stderr.read().decode()
        assert time.time() < deadline, 'no answer within 5 minutes'
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait()
    kept = [line for line in lines(log) if line.endswith('}')]
    assert 2 <= len(kept) < 8, 'the run finished before it could be killed'

    assert run(tiny_model, dev_tsv, work_dir, '--limit', '8') == 0
    assert f'resuming: {len(kept)} of 8 answers already' in capsys.readouterr().err
    after = lines(log)
    assert after[:len(kept)] == kept  # answers from before the kill are kept, not recomputed
    assert sorted(json.loads(line)['index'] for line in after) == list(range(8))  # each row once
    assert json.loads((work_dir / 'result.json').read_text())['answered'] == 8


def test_corrupt_rows_are_skipped_named_and_counted(tiny_model, dev_tsv, tmp_path, capsys):
    frame = pd.read_csv(dev_tsv, sep='\t', dtype=str, keep_default_na=False)
    frame.loc[1, 'image'] = 'bm90IGFuIGltYWdlIGF0IGFsbCwgc29ycnk='  # base64 of text, not a picture
    frame.to_csv(tmp_path / 'bad.tsv', sep='\t', index=False)
    assert run(tiny_model, tmp_path / 'bad.tsv', tmp_path / 'out', '--limit', '2') == 0
    out = capsys.readouterr()
    assert f'skipping corrupt row {tmp_path / "bad.tsv"}:3 (index 1): image cell is not a base64 picture' in out.err
    result = json.loads((tmp_path / 'out' / 'result.json').read_text())
    assert (result['corrupt'], result['answered']) == (1, 2)  # rows 0 and 2 asked; row 1 skipped
    assert result['corrupt_rows'][0]['line'] == 3 and '1 corrupt (skipped)' in out.out


def test_before_after_writes_one_table(tiny_model, dev_tsv, tmp_path, capsys):
    assert main([str(tiny_model), '--compare', str(tiny_model), '--data-path', str(dev_tsv), '--work-dir',
                 str(tmp_path), *QUICK, '--limit', '2']) == 0
    assert (tmp_path / 'base' / 'predictions.jsonl').is_file() and (tmp_path / 'finetuned' / 'result.json').is_file()
    deltas = json.loads((tmp_path / 'compare.json').read_text())
    labels = [d['label'] for d in deltas]
    assert labels[0] == 'vanilla overall' and 'category: color_recognition' in labels
    assert all(d['delta'] == 0.0 for d in deltas)  # the same model twice, greedy: no difference
    assert 'before/after on MMBench_DEV_EN_sample' in capsys.readouterr().out
    assert (tmp_path / 'compare.txt').read_text().startswith('accuracy (%)')


def test_usage_errors_say_what_to_pass(tiny_model, dev_tsv, tmp_path, capsys):
    assert main(['configs/internvl/internvl2_tiny_qlora.py', '--data-path', str(dev_tsv), '--work-dir',
                 str(tmp_path)]) == 1
    assert 'also pass its trained weights, e.g. --checkpoint' in capsys.readouterr().err
    assert run(tiny_model, tmp_path / 'missing.tsv', tmp_path) == 1
    assert 'no such TSV; pass --data-path' in capsys.readouterr().err


def test_a_config_and_its_checkpoint_answer_with_the_trained_lora(tiny_model, dev_tsv, tmp_path, repo_root,
                                                                  monkeypatch, capsys):
    """``CONFIG --checkpoint iter_N.pth``: the config's QLoRA model with the trained state loaded strictly."""
    from xtuner_ext.evaluation.mmbench.answering import InternVL2Answerer

    monkeypatch.setenv('XTUNER_EXT_MODEL_PATH', str(tiny_model))
    config = repo_root / 'configs' / 'internvl' / 'internvl2_tiny_qlora.py'
    zero, iter_1 = _checkpoints(config, tmp_path, {'zero.pth': 0.0, 'iter_1.pth': 0.05})
    untrained, trained = InternVL2Answerer.from_config(config, zero), InternVL2Answerer.from_config(config, iter_1)
    lora_b = {n: p for n, p in trained.model.named_parameters() if 'lora_B' in n}
    assert lora_b and all(torch.all(p == 0.05) for p in lora_b.values())
    assert untrained.processor.tiling.max_dynamic_patch == 6  # the official evaluation's, not training's 2
    # a squarish picture: one tile keeps the two answers short on a CPU
    row = next(r for r in read_mmbench_tsv(dev_tsv).rows if trained.processor.num_tiles(r.decode_image().size) == 1)
    question, image = build_question(row, 'en'), row.decode_image()
    assert trained.answer(image, question) != untrained.answer(image, question)

    assert main([str(config), '--checkpoint', str(tmp_path / 'iter_1.pth'), '--data-path', str(dev_tsv),
                 '--work-dir', str(tmp_path / 'run'), '--limit', '1', '--no-dynamic', '--max-new-tokens', '2',
                 '--no-progress']) == 0
    assert json.loads((tmp_path / 'run' / 'result.json').read_text())['answered'] == 1
    assert 'iter_1.pth' in json.loads((tmp_path / 'run' / 'run.json').read_text())['model']


def _checkpoints(config, folder, lora_b_values):
    """Trainable-state checkpoints as ``xtuner train`` saves them: file name -> value of every LoRA B."""
    from mmengine.config import Config
    from mmengine.registry import MODELS

    from xtuner_ext.registration import register_all

    register_all()
    model = MODELS.build(Config.fromfile(str(config)).model)
    paths = []
    for file_name, value in lora_b_values.items():
        state = {k: torch.full_like(v, value) if 'lora_B' in k else v for k, v in model.state_dict().items()}
        torch.save({'meta': {}, 'state_dict': state}, folder / file_name)
        paths.append(folder / file_name)
    return paths


def test_xtuner_ext_lists_mmbench_as_its_own_command(capsys):
    from xtuner_ext.cli import main as xtuner_ext_main

    with pytest.raises(SystemExit) as exit_info:
        xtuner_ext_main(['mmbench', '--help'])
    assert exit_info.value.code == 0
    assert 'usage: xtuner-ext mmbench' in capsys.readouterr().out


def test_circular_run_asks_every_rotation(tiny_model, dev_tsv, tmp_path):
    assert run(tiny_model, dev_tsv, tmp_path, '--limit', '1', '--circular') == 0
    records = [json.loads(line) for line in lines(tmp_path / 'predictions.jsonl')]
    assert sorted(r['index'] for r in records) == [0, 1_000_000, 2_000_000, 3_000_000]  # 4 options, 4 rotations
    assert len({r['question'] for r in records}) == 4  # the options move, the question stays
    assert {r['answer'] for r in records} == {'A', 'B', 'C', 'D'}
    result = json.loads((tmp_path / 'result.json').read_text())
    assert result['circular']['questions'] == 1 and result['vanilla']['questions'] == 1
