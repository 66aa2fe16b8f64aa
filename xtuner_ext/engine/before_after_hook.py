"""BeforeAfterChatHook: the same questions on the same images, answered greedily before training,
every N iterations and after the last one, kept and compared in a report in the work dir.

Stock ``EvaluateChatHook`` samples, prints and forgets, and reaches into LLaVA internals. This hook
schedules only: the model answers (see :mod:`xtuner_ext.evaluation.chat_backends`), the metrics and
the report are pure functions (:mod:`xtuner_ext.evaluation.metrics`, :mod:`~.report`). Its state
rides in each checkpoint's ``meta``, so ``--resume`` keeps the "before" answers. Evaluation runs
inside ``torch.random.fork_rng``: it neither depends on nor disturbs the training random state.
"""
from __future__ import annotations

import logging
import time
from typing import Optional, Sequence

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from PIL import Image

from xtuner_ext.evaluation.chat_backends import backend_for, build_from_config, template_conflict
from xtuner_ext.evaluation.items import (attach_choices, drop_unreadable_images, image_problem, input_items,
                                         record_items, training_answers)
from xtuner_ext.evaluation.metrics import stage_metrics
from xtuner_ext.evaluation.report import thumbnail_data_uri, write_report

META_KEY = 'before_after_chat'


class BeforeAfterChatHook(Hook):
    """Args (stock ``EvaluateChatHook``'s first, same meaning):
        evaluation_inputs / evaluation_images: free questions (no reference), one image for all or one each.
        every_n_iters: also evaluate every N iterations (None: only before and after).
        max_new_tokens: answer length cap (bounds evaluation time with ``max_items``).
        system / prompt_template / stop_words / tokenizer / image_processor: the prompt and its
            encoding, as stock builds them, for stock LLaVAModel and SupervisedFinetune. InternVL2QLoRA
            builds prompts with its processor: ``system`` replaces the processor's system message, and a
            ``prompt_template`` that is not the model folder's gets a warning at the start of the run
            (the folder's template is what the model was trained with, so it is kept).
        generation_kwargs: extra ``generate`` arguments; decoding stays greedy (``do_sample=False``).
        heldout_data: a held-out data file or folder (any layout ``load_any`` reads, e.g. the
            split's ``heldout.json``); its first ``max_items`` records are scored.
        train_data / train_items: the training data; its first ``train_items`` records are shown and
            scored apart (memorised vs learned), and all its answers define the copy rate.
        image_folder: where relative image paths of both files point (default: each file's own).
        choice_candidates: other items' references each reference competes with (choice accuracy).
        answer_batch_size: image questions answered in one left-padded ``generate`` (InternVL2's
            ``chat_batch``; same greedy answers, a 4-bit model decodes several rows for about the cost
            of one); 1, or a backend without batching, answers one by one.
    """

    priority = 'LOW'  # after the optimizer step, before CheckpointHook saves the iteration

    def __init__(self, evaluation_inputs=None, evaluation_images=None, every_n_iters: Optional[int] = None,
                 max_new_tokens: int = 64, system: str = '', prompt_template=None, stop_words: Sequence[str] = (),
                 generation_kwargs: Optional[dict] = None, tokenizer=None, image_processor=None, stop_word=None,
                 heldout_data: Optional[str] = None, max_items: int = 16, train_data: Optional[str] = None,
                 train_items: int = 0, image_folder: Optional[str] = None, choice_candidates: int = 4,
                 thumbnail_size: int = 128, answer_batch_size: int = 8):
        if int(answer_batch_size) != answer_batch_size or answer_batch_size < 1:
            raise ValueError(f'answer_batch_size must be a whole number >= 1, got {answer_batch_size!r}')
        self.every_n_iters = every_n_iters
        self.answer_batch_size = int(answer_batch_size)
        self.generation_config = greedy_generation_config(max_new_tokens, generation_kwargs)
        self.stop_words = [w for w in [*(stop_words or ()), stop_word] if w]
        self.prompt_args = dict(system=system, prompt_template=prompt_template,
                                tokenizer=build_from_config(tokenizer), image_processor=build_from_config(image_processor))
        self.items = self._collect_items(evaluation_inputs, evaluation_images, heldout_data, max_items, train_data,
                                         train_items, image_folder, choice_candidates)
        self.training_answers = training_answers(train_data, image_folder)
        self.thumbnails = {i['id']: thumbnail_data_uri(i['image'], thumbnail_size) for i in self.items if i['image']}
        self.state = dict(items=self.items, stages=[], loss=[])

    @staticmethod
    def _collect_items(evaluation_inputs, evaluation_images, heldout_data, max_items, train_data, train_items,
                       image_folder, choice_candidates) -> list:
        items = input_items(evaluation_inputs, evaluation_images)
        if heldout_data is not None:
            items += record_items(heldout_data, 'heldout', max_items, image_folder)
        if train_data is not None and train_items:
            items += record_items(train_data, 'train', train_items, image_folder)
        items = drop_unreadable_images(items)
        if not items:
            raise ValueError('BeforeAfterChatHook has nothing to evaluate: give evaluation_inputs or a heldout_data '
                             f'file with usable records (heldout_data={heldout_data!r}, max_items={max_items}, '
                             f'train_data={train_data!r}, train_items={train_items})')
        return attach_choices(items, choice_candidates)

    # ---- schedule ----
    def before_run(self, runner) -> None:
        """One warning, before anything runs, when ``prompt_template`` cannot take effect."""
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        processor = getattr(model, 'processor', None)
        conflict = template_conflict(processor, self.prompt_args['prompt_template']) if processor else None
        if conflict:
            print_log(f'BeforeAfterChatHook: {conflict}; {type(model).__name__} builds every prompt with its '
                      'processor, from the model folder\'s template, as in training, so that template is used '
                      'and prompt_template is ignored (leave it out, or set system= to change the system message)',
                      'current', logging.WARNING)

    def before_train(self, runner) -> None:
        if not self.state['stages']:  # a resume brings its stages back in after_load_checkpoint
            self._evaluate(runner, 'before' if runner.iter == 0 else f'iter_{runner.iter}', runner.iter)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self._record_loss(runner)
        if self.every_n_iters and self.every_n_train_iters(runner, self.every_n_iters) \
                and not self.is_last_train_iter(runner):
            self._evaluate(runner, f'iter_{runner.iter + 1}', runner.iter + 1)  # runner.iter counts up after

    def after_train(self, runner) -> None:
        self._evaluate(runner, 'after', runner.iter)

    # ---- state in checkpoints ----
    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint.setdefault('meta', {})[META_KEY] = dict(stages=self.state['stages'], loss=self.state['loss'])

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        saved = checkpoint.get('meta', {}).get(META_KEY)
        if saved is None or not getattr(runner, '_resume', False):  # `load_from` starts a new comparison
            return
        self.state['stages'], self.state['loss'] = list(saved['stages']), list(saved['loss'])

    # ---- work ----
    def _record_loss(self, runner) -> None:
        scalar = runner.message_hub.log_scalars.get('train/loss')
        if scalar is not None:
            self.state['loss'].append([runner.iter + 1, float(scalar.current())])

    def _evaluate(self, runner, name: str, iteration: int) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        backend = backend_for(model, self.generation_config, self.stop_words, **self.prompt_args)
        start = time.perf_counter()
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            answers, scores = self._answer_all(backend)
        stage = dict(name=name, iter=iteration, seconds=round(time.perf_counter() - start, 3), answers=answers,
                     choice_scores=scores, metrics=self._metrics(answers, scores))
        self.state['stages'].append(stage)
        print_log(f'BeforeAfterChatHook: {name} (iteration {iteration}): {len(answers)} of {len(self.items)} '
                  f'items answered in {stage["seconds"]:.1f} s (max_new_tokens='
                  f'{self.generation_config["max_new_tokens"]})', 'current')
        self._publish(runner, stage)

    def _answer_all(self, backend) -> tuple:
        """Image questions ``answer_batch_size`` at a time where the backend can (InternVL2), the rest one by one."""
        readable = [(item, image) for item in self.items for ok, image in [self._open_image(item)] if ok]
        batched = {}
        if hasattr(backend, 'answer_batch') and self.answer_batch_size > 1:
            with_image = [(item, image) for item, image in readable if image is not None]
            for start in range(0, len(with_image), self.answer_batch_size):
                chunk = with_image[start:start + self.answer_batch_size]
                texts = backend.answer_batch([image for _, image in chunk], [item['question'] for item, _ in chunk])
                batched.update((item['id'], text) for (item, _), text in zip(chunk, texts))
        answers, scores = {}, {}
        for item, image in readable:
            answers[item['id']] = batched[item['id']] if item['id'] in batched else backend.answer(image, item['question'])
            if item['choices']:
                scores[item['id']] = backend.score(image, item['question'], item['choices'])
        return answers, scores

    @staticmethod
    def _open_image(item: dict) -> tuple:
        """``(True, image or None for text-only)``, or ``(False, None)`` with a warning when the image
        became unreadable since the start."""
        if not item.get('image'):
            return True, None
        problem = image_problem(item['image'])
        if problem:
            print_log(f'BeforeAfterChatHook: skipping item {item["id"]} this time: its image {item["image"]} cannot '
                      f'be read ({problem})', 'current', logging.WARNING)
            return False, None
        with Image.open(item['image']) as image:
            return True, image.convert('RGB')

    def _metrics(self, answers: dict, scores: dict) -> dict:
        metrics = {}
        for split in dict.fromkeys(i['split'] for i in self.items):
            done = [i for i in self.items if i['split'] == split and i['id'] in answers]
            metrics[split] = stage_metrics([answers[i['id']] for i in done], [i['reference'] for i in done],
                                           self.training_answers, [scores.get(i['id']) for i in done])
        return metrics

    def _publish(self, runner, stage: dict) -> None:
        scalars = {f'before_after/{split}/{metric}': value for split, values in stage['metrics'].items()
                   for metric, value in values.items() if value is not None}
        if scalars:
            runner.visualizer.add_scalars(scalars, step=stage['iter'])
        if is_main_process():
            page = write_report(runner.work_dir, self.state, self.thumbnails)
            print_log(f'BeforeAfterChatHook: report updated: {page}', 'current')


def greedy_generation_config(max_new_tokens: int, generation_kwargs: Optional[dict]) -> dict:
    """Greedy decoding whatever ``generation_kwargs`` say: before/after differences come from the
    weights, not from sampling (sampling keys are dropped with a warning)."""
    kwargs = dict(generation_kwargs or {})
    sampling = {k: kwargs.pop(k) for k in ('do_sample', 'temperature', 'top_p', 'top_k') if k in kwargs}
    if sampling.get('do_sample') or {'temperature', 'top_p', 'top_k'} & set(sampling):
        print_log(f'BeforeAfterChatHook decodes greedily; ignoring {sampling}', 'current', logging.WARNING)
    return dict(kwargs, max_new_tokens=max_new_tokens, do_sample=False)
