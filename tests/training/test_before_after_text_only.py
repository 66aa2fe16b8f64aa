"""BeforeAfterChatHook with stock XTuner's SupervisedFinetune: a text-only LLM, text-only data."""
import json

import pytest
import torch

from xtuner_ext.engine.before_after_hook import BeforeAfterChatHook
from xtuner_ext.evaluation.chat_backends import CausalLMChatBackend, backend_for

TEMPLATE = dict(SYSTEM='<|im_start|>system\n{system}<|im_end|>\n',
                INSTRUCTION='<|im_start|>user\n{input}<|im_end|>\n<|im_start|>assistant\n',
                STOP_WORDS=['<|im_end|>'])


@pytest.fixture(scope='module')
def text_model(tiny_model_dir, tmp_path_factory):
    """Stock SupervisedFinetune, built as a stock config builds it, around a tiny random Llama saved
    with the tiny InternVL2's tokenizer."""
    from mmengine.config import ConfigDict
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM
    from xtuner.model import SupervisedFinetune

    folder = tmp_path_factory.mktemp('tiny_llm')
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2)).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    llm = ConfigDict(type=AutoModelForCausalLM.from_pretrained, pretrained_model_name_or_path=str(folder),
                     torch_dtype=torch.float32)  # what a stock config holds
    return SupervisedFinetune(llm=llm, use_activation_checkpointing=False), tokenizer


@pytest.fixture
def text_data(tmp_path):
    records = [dict(id=f't{i}', conversations=[dict(**{'from': 'human'}, value=q), dict(**{'from': 'gpt'}, value=a)])
               for i, (q, a) in enumerate([('讲一个关于太阳的笑话', '太阳：我每天准时上班。'),
                                           ('讲一个关于月亮的笑话', '月亮：今天只上半天班。'),
                                           ('讲一个关于鱼的笑话', '鱼：我在水里开着静音。')])]
    path = tmp_path / 'heldout.json'
    path.write_text(json.dumps(records, ensure_ascii=False), encoding='utf-8')
    return path


def test_text_only_model_is_answered_and_scored_greedily(text_model, text_data):
    model, tokenizer = text_model
    hook = BeforeAfterChatHook(evaluation_inputs=['你好'], heldout_data=str(text_data), train_data=str(text_data),
                               train_items=1, tokenizer=tokenizer, system='你是一个幽默的助手',
                               prompt_template=TEMPLATE, max_new_tokens=6, choice_candidates=2)
    backend = backend_for(model, hook.generation_config, hook.stop_words, **hook.prompt_args)
    assert isinstance(backend, CausalLMChatBackend)
    prompt = tokenizer.decode(backend.prompt.ids('你好'))  # stock EvaluateChatHook's: system + instruction
    assert prompt.endswith('<|im_start|>system\n你是一个幽默的助手<|im_end|>\n<|im_start|>user\n你好<|im_end|>\n'
                           '<|im_start|>assistant\n')
    assert tokenizer.convert_tokens_to_ids('<|im_end|>') in backend.prompt.stop_ids  # the template's STOP_WORDS
    model.train()
    first = hook._answer_all(backend)
    torch.manual_seed(123)
    assert hook._answer_all(backend) == first and model.training
    answers, scores = first
    assert set(answers) == {'input:0', 'heldout:t0', 'heldout:t1', 'heldout:t2', 'train:t0'}
    assert all(len(scores[f'heldout:t{i}']) == 3 for i in range(3)) and 'input:0' not in scores
    metrics = hook._metrics(answers, scores)
    assert set(metrics) == {'input', 'heldout', 'train'} and metrics['input']['rouge_l'] is None


def test_text_only_model_needs_a_tokenizer(text_model, text_data):
    model, _ = text_model
    hook = BeforeAfterChatHook(heldout_data=str(text_data))
    with pytest.raises(ValueError, match='needs tokenizer='):
        backend_for(model, hook.generation_config)
