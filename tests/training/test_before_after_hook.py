"""BeforeAfterChatHook on the tiny InternVL2: the question set, greedy answers, bad images, and the
report after real `xtuner train` runs (including one resumed from a checkpoint)."""
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from xtuner_ext.engine.before_after_hook import BeforeAfterChatHook
from xtuner_ext.evaluation.chat_backends import backend_for

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / 'configs' / 'internvl' / 'internvl2_tiny_qlora.py'
XTUNER = Path(sys.executable).parent / 'xtuner'


def write_records(path: Path, records: list) -> Path:
    path.write_text(json.dumps(records, ensure_ascii=False), encoding='utf-8')
    return path


def test_items_come_from_heldout_train_and_free_questions(sample_dir):
    hook = BeforeAfterChatHook(evaluation_inputs=['这是什么？'], evaluation_images=[str(next((sample_dir / 'ex_images').iterdir()))],
                               heldout_data=str(sample_dir / 'heldout.json'), max_items=3,
                               train_data=str(sample_dir / 'train.json'), train_items=2, choice_candidates=2)
    splits = [i['split'] for i in hook.items]
    assert splits == ['input', 'heldout', 'heldout', 'heldout', 'train', 'train']
    heldout = [i for i in hook.items if i['split'] == 'heldout']
    assert all(i['choices'][0] == i['reference'] and len(i['choices']) == 3 for i in heldout)
    assert hook.items[0]['choices'] == [] and hook.items[0]['reference'] is None
    assert len(hook.training_answers) == 40
    assert all(hook.thumbnails[i['id']].startswith('data:image/jpeg;base64,') for i in hook.items)


def test_repeated_record_ids_stay_apart(sample_dir, tmp_path):
    """The LLaVA tutorial's data repeats ids (unique_data.json, then x200): each item keeps its answers."""
    records = json.loads((sample_dir / 'heldout.json').read_text(encoding='utf-8'))[:3]
    (tmp_path / 'ex_images').symlink_to(sample_dir / 'ex_images')
    data = write_records(tmp_path / 'heldout.json', [dict(r, id='same') for r in records])
    assert [i['id'] for i in BeforeAfterChatHook(heldout_data=str(data)).items] == \
        ['heldout:same', 'heldout:same#1', 'heldout:same#2']


@pytest.fixture
def warnings_logged():
    """Messages of WARNING level sent to mmengine's current logger during the test."""
    from mmengine.logging import MMLogger

    class Collect(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    messages, handler = [], Collect(logging.WARNING)
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    yield messages
    logger.removeHandler(handler)


def test_missing_image_is_a_warning_naming_file_and_item_and_the_item_is_skipped(sample_dir, tmp_path,
                                                                                   warnings_logged):
    records = json.loads((sample_dir / 'heldout.json').read_text(encoding='utf-8'))[:3]
    records[1]['image'] = 'ex_images/gone.jpg'
    (tmp_path / 'ex_images').symlink_to(sample_dir / 'ex_images')
    data = write_records(tmp_path / 'heldout.json', records)
    hook = BeforeAfterChatHook(heldout_data=str(data))
    out = '\n'.join(warnings_logged)
    assert [i['id'] for i in hook.items] == [f'heldout:{records[0]["id"]}', f'heldout:{records[2]["id"]}']
    assert 'gone.jpg' in out and f'heldout:{records[1]["id"]}' in out and 'skipping item' in out


def test_empty_evaluation_set_is_an_error_at_start(sample_dir, tmp_path):
    records = json.loads((sample_dir / 'heldout.json').read_text(encoding='utf-8'))[:1]
    records[0]['image'] = 'ex_images/gone.jpg'
    data = write_records(tmp_path / 'heldout.json', records)
    with pytest.raises(ValueError, match='nothing to evaluate'):
        BeforeAfterChatHook(heldout_data=str(data))
    with pytest.raises(ValueError, match='nothing to evaluate'):
        BeforeAfterChatHook()


def test_answers_are_greedy_and_independent_of_the_random_state(make_qlora, sample_dir):
    from training_helpers import lora

    model = make_qlora(llm_lora=lora(dropout=0.5))  # dropout would change answers if it ran
    model.train()
    hook = BeforeAfterChatHook(heldout_data=str(sample_dir / 'heldout.json'), max_items=2, max_new_tokens=8,
                               generation_kwargs=dict(do_sample=True, temperature=1.0))
    backend = backend_for(model, hook.generation_config)
    runs = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        runs.append(hook._answer_all(backend))
    assert runs[0] == runs[1]
    answers, scores = runs[0]
    assert len(answers) == 2 and all(len(s) == 2 for s in scores.values())  # own + the other item's reference
    assert model.training  # the model is handed back in the mode it had


def test_batched_answers_are_the_one_by_one_answers_in_item_order(make_qlora, sample_dir):
    """Image questions go through chat_batch (left-padded, 3 at a time here), a text-only question
    through chat; every answer is what the one-by-one path gives (greedy, fp32)."""
    model = make_qlora()
    kwargs = dict(heldout_data=str(sample_dir / 'heldout.json'), max_items=5, max_new_tokens=10,
                  evaluation_inputs=['讲个笑话'])
    batched = BeforeAfterChatHook(answer_batch_size=3, **kwargs)
    one_by_one = BeforeAfterChatHook(answer_batch_size=1, **kwargs)
    calls = []
    original = model.chat_batch
    model.chat_batch = lambda images, *args, **kw: calls.append(len(images)) or original(images, *args, **kw)
    answers, scores = batched._answer_all(backend_for(model, batched.generation_config))
    assert calls == [3, 2]  # five images in two generate calls; the text-only question alone
    expected, expected_scores = one_by_one._answer_all(backend_for(model, one_by_one.generation_config))
    assert calls == [3, 2]
    assert list(answers) == list(expected) == [item['id'] for item in batched.items]
    assert answers == expected and scores == expected_scores
    assert len(set(answers.values())) > 1  # different images, different answers: not one row copied
    with pytest.raises(ValueError, match='answer_batch_size'):
        BeforeAfterChatHook(answer_batch_size=0, **kwargs)


def test_image_that_disappears_during_training_skips_that_item(make_qlora, sample_dir, tmp_path):
    records = json.loads((sample_dir / 'heldout.json').read_text(encoding='utf-8'))[:2]
    image = tmp_path / 'ex_images' / Path(records[0]['image']).name
    image.parent.mkdir()
    image.write_bytes((sample_dir / records[0]['image']).read_bytes())
    records[1]['image'] = str(Path(records[1]['image']))
    (tmp_path / records[1]['image']).write_bytes((sample_dir / records[1]['image']).read_bytes())
    hook = BeforeAfterChatHook(heldout_data=str(write_records(tmp_path / 'h.json', records)), max_new_tokens=4)
    image.unlink()
    answers, _ = hook._answer_all(backend_for(make_qlora(), hook.generation_config))
    assert list(answers) == [f'heldout:{records[1]["id"]}']


def test_system_replaces_the_processors_system_message_while_evaluating(make_qlora, sample_dir):
    model = make_qlora()
    hook = BeforeAfterChatHook(heldout_data=str(sample_dir / 'heldout.json'), max_items=2, choice_candidates=1)
    item = hook.items[0]
    own = model.processor.system_message
    plain = backend_for(model, hook.generation_config).score(item['image'], item['question'], item['choices'])
    told = backend_for(model, hook.generation_config, system='你是一个只讲冷笑话的助手')
    assert told.score(item['image'], item['question'], item['choices']) != plain  # the prompt changed
    assert model.processor.system_message == own  # and is the model's own again


def test_a_foreign_prompt_template_is_one_warning_before_the_run(make_qlora, sample_dir, warnings_logged):
    from types import SimpleNamespace

    from xtuner.utils import PROMPT_TEMPLATE

    runner = SimpleNamespace(model=make_qlora())
    for template in (None, 'xtuner.utils.PROMPT_TEMPLATE.vicuna'):
        BeforeAfterChatHook(heldout_data=str(sample_dir / 'heldout.json'), prompt_template=template).before_run(runner)
    assert len(warnings_logged) == 1
    assert 'model folder' in warnings_logged[0] and 'prompt_template is ignored' in warnings_logged[0]
    own = runner.model.processor.template
    same = dict(PROMPT_TEMPLATE.vicuna, INSTRUCTION=own.roles[0] + '{input}' + own.sep + own.roles[1])
    BeforeAfterChatHook(heldout_data=str(sample_dir / 'heldout.json'), prompt_template=same).before_run(runner)
    assert len(warnings_logged) == 1


# ---- real `xtuner train` runs ----
def train(env, work_dir: Path, data_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    """4 iterations (4 records x 4 repeats / batch 4), a checkpoint every 2, a tiny evaluation."""
    command = [str(XTUNER), 'train', str(CONFIG), '--work-dir', str(work_dir), *extra, '--cfg-options',
               f'train_dataloader.dataset.data_path={data_dir / "train4.json"}',
               'train_dataloader.dataset.repeat_times=4', 'train_cfg.iter_cap=4',
               'default_hooks.checkpoint.interval=2', 'custom_hooks.1.max_items=3', 'custom_hooks.1.train_items=2',
               'custom_hooks.1.max_new_tokens=6', f'custom_hooks.1.train_data={data_dir / "train4.json"}',
               'custom_hooks.1.every_n_iters=2']
    return subprocess.run(command, env=env, capture_output=True, text=True)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    from xtuner_ext.data.sample import make_clot_sample
    from xtuner_ext.models.internvl2.tiny import make_tiny_model

    root = tmp_path_factory.mktemp('before_after')
    make_tiny_model(root / 'model', seed=0, max_dynamic_patch=2)
    data_dir = make_clot_sample(root / 'data', seed=0)
    records = json.loads((data_dir / 'train.json').read_text(encoding='utf-8'))[:4]
    write_records(data_dir / 'train4.json', records)
    env = dict(os.environ, XTUNER_EXT_MODEL_PATH=str(root / 'model'), XTUNER_EXT_DATA_ROOT=str(data_dir))
    result = train(env, root / 'run', data_dir)
    assert (root / 'run' / 'before_after.html').is_file(), result.stdout[-3000:] + result.stderr[-3000:]
    return env, data_dir, root / 'run'


def read_rows(work_dir: Path) -> list:
    return [json.loads(line) for line in (work_dir / 'before_after.jsonl').read_text(encoding='utf-8').splitlines()]


@pytest.mark.slow
def test_report_after_a_real_training_run(trained):
    _, data_dir, work_dir = trained
    rows = read_rows(work_dir)
    heldout = [r['id'] for r in json.loads((data_dir / 'heldout.json').read_text(encoding='utf-8'))[:3]]
    for stage, iteration in (('before', 0), ('iter_2', 2), ('after', 4)):
        got = {r['id']: r for r in rows if r['stage'] == stage}
        assert {f'heldout:{i}' for i in heldout} <= set(got), stage
        assert sum(r['split'] == 'train' for r in got.values()) == 2
        assert all(r['iter'] == iteration and isinstance(r['answer'], str) for r in got.values())
    metrics = json.loads((work_dir / 'before_after_metrics.json').read_text(encoding='utf-8'))
    assert list(metrics) == ['before', 'iter_2', 'after']
    markdown = (work_dir / 'before_after.md').read_text(encoding='utf-8')
    for split in ('heldout', 'train'):
        before, after = metrics['before']['metrics'][split], metrics['after']['metrics'][split]
        for name in ('rouge_l', 'choice_accuracy', 'mean_length'):
            line = f'| {name} | {before[name]:.3f} | {after[name]:.3f} | {after[name] - before[name]:+.3f} |'
            assert line in markdown
    page = (work_dir / 'before_after.html').read_text(encoding='utf-8')
    assert page.count('data:image/jpeg;base64,') == 5 and '<svg' in page and 'src="http' not in page
    assert 'training loss:' in markdown and len(list(work_dir.glob('*/vis_data/events.out.tfevents.*'))) == 1


@pytest.mark.slow
def test_resume_keeps_the_before_answers(trained, tmp_path):
    env, data_dir, first = trained
    result = train(env, tmp_path, data_dir, '--resume', str(first / 'iter_2.pth'))
    assert (tmp_path / 'iter_4.pth').is_file(), result.stdout[-3000:] + result.stderr[-3000:]
    log = '\n'.join(p.read_text(encoding='utf-8') for p in tmp_path.glob('*/*.log'))
    assert 'BeforeAfterChatHook: before' not in log and 'BeforeAfterChatHook: after' in log
    rows, reference = read_rows(tmp_path), read_rows(first)
    assert [r for r in rows if r['stage'] != 'after'] == [r for r in reference if r['stage'] != 'after']
    assert {r['stage'] for r in rows} == {'before', 'iter_2', 'after'}


def test_answer_likelihood_is_minus_the_training_loss(make_qlora, train_dataset, sample_dir):
    """The choice score of an answer is the training loss of the same record, negated."""
    from xtuner_ext.data.internvl2_dataset import internvl2_collate_fn

    model = make_qlora().eval()
    question, answer = (t['value'] for t in json.loads((sample_dir / 'train.json').read_text('utf-8'))[0]['conversations'])
    with torch.no_grad():
        loss = model(internvl2_collate_fn([train_dataset[0]])['data'])['loss']
    scores = model.answer_log_likelihood(train_dataset.samples[0]['image'], question, [answer, '别的笑话'])
    assert scores[0] == pytest.approx(-float(loss), abs=1e-3) and scores[0] != scores[1]  # 4-bit kernels differ slightly


def test_chat_between_training_steps_leaves_the_gradients_unchanged(make_qlora, train_dataset, sample_dir):
    """Evaluating mid-training must not repack the 4-bit weights for inference (bitsandbytes does so
    in eval mode on AVX512-BF16 CPUs, and backward then runs through a kernel without autograd)."""
    import bitsandbytes as bnb
    from xtuner_ext.data.internvl2_dataset import internvl2_collate_fn

    batch = internvl2_collate_fn([train_dataset[0], train_dataset[1]])['data']
    grads = []
    for evaluate_first in (False, True):
        torch.manual_seed(0)
        model = make_qlora()
        if evaluate_first:
            model.chat(train_dataset.samples[0]['image'], '讲个梗', generation_config=dict(max_new_tokens=3))
            model.answer_log_likelihood(None, '讲个梗', ['太阳'])
        model(batch)['loss'].backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
        layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
        assert layers and not any(getattr(m.weight.quant_state, 'packing_format_for_cpu', False) for m in layers)
    assert grads[0].keys() == grads[1].keys()
    assert all(torch.allclose(grads[0][n], grads[1][n], atol=1e-6) for n in grads[0])
