"""BeforeAfterChatHook on stock XTuner's LLaVAModel (tiny native InternLM2 + tiny CLIP): prompts built
from the hook's system and prompt_template as stock EvaluateChatHook builds them, greedy reproducible
answers, and choice accuracy from answer likelihoods given the image."""
import os

import pytest
import torch
from mmengine.config import Config

from xtuner_ext.engine.before_after_hook import BeforeAfterChatHook
from xtuner_ext.evaluation.chat_backends import IMAGE_TOKEN_INDEX, LLaVAChatBackend, backend_for

from test_llava_configs import FINETUNE, build

SYSTEM = 'You describe pictures.'


@pytest.fixture
def llava(llava_env):
    model, config = build(FINETUNE)
    data = llava_env['XTUNER_EXT_DATA_ROOT']
    hook = BeforeAfterChatHook(evaluation_inputs=['Please describe this picture'],
                               evaluation_images=os.path.join(data, 'test_img', 'oph.png'),
                               heldout_data=os.path.join(data, 'unique_data.json'), max_new_tokens=6,
                               tokenizer=config.tokenizer, image_processor=config.image_processor,
                               system=SYSTEM, prompt_template=config.prompt_template, choice_candidates=2)
    return model, hook, backend_for(model, hook.generation_config, hook.stop_words, **hook.prompt_args)


def test_prompt_is_stock_evaluate_chat_hooks(llava):
    _, hook, backend = llava
    assert isinstance(backend, LLaVAChatBackend)
    tokenizer = hook.prompt_args['tokenizer']
    ids = backend.prompt.ids('<image>\nWhat is the equipment in the image?', with_image=True)
    assert ids[0] == tokenizer.bos_token_id and ids.count(IMAGE_TOKEN_INDEX) == 1
    split = ids.index(IMAGE_TOKEN_INDEX)
    text = tokenizer.decode(ids[1:split]) + '<image>' + tokenizer.decode(ids[split + 1:])
    assert text == (f'<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n<image>\n'
                    'What is the equipment in the image?<|im_end|>\n<|im_start|>assistant\n')
    assert '<|im_end|>' in backend.prompt.stop_words  # the template's STOP_WORDS
    assert tokenizer.convert_tokens_to_ids('<|im_end|>') in backend.prompt.stop_ids  # generation stops there


def test_answers_are_greedy_reproducible_and_scored(llava):
    model, hook, backend = llava
    model.train()
    answers, scores = hook._answer_all(backend)
    torch.manual_seed(7)
    assert hook._answer_all(backend) == (answers, scores) and model.training
    assert set(answers) == {'input:0', 'heldout:4672496731', 'heldout:123456789'}
    assert all(isinstance(a, str) for a in answers.values())
    assert len(scores['heldout:4672496731']) == 2 and all(s < 0 for s in scores['heldout:4672496731'])
    metrics = hook._metrics(answers, scores)
    assert metrics['heldout']['choice_accuracy'] in (0.0, 0.5, 1.0)


def test_the_image_changes_the_likelihood(llava, image):
    from PIL import Image

    _, _, backend = llava
    answers = ['A doctor is testing the eyes of a patient.']
    with Image.open(image) as picture:
        seen = backend.score(picture.convert('RGB'), 'Describe this image.', answers)
    assert seen != backend.score(None, 'Describe this image.', answers)


def test_llava_needs_the_image_processor(llava_env):
    model, config = build(FINETUNE)
    hook = BeforeAfterChatHook(evaluation_inputs=['hi'], tokenizer=config.tokenizer)
    with pytest.raises(ValueError, match='needs image_processor='):
        backend_for(model, hook.generation_config, **hook.prompt_args)
