# Config fragment: the before/after chat report (BeforeAfterChatHook) for any config.
#
# Add it to a config and give it the data paths there (values from this file can be overridden):
#     _base_ = ['<relative path to>/hooks/before_after_chat.py']
#     custom_hooks = [dict(type='RandomStateHook'),
#                     dict(_base_.before_after_chat_hook, heldout_data=data_root + '/heldout.json',
#                          train_data=data_path)]
# InternVL2QLoRA builds its prompts with its processor. Stock LLaVAModel and SupervisedFinetune need
# what stock EvaluateChatHook needs: tokenizer=tokenizer, prompt_template=prompt_template,
# system=SYSTEM, and for LLaVA image_processor=image_processor (see configs/llava/, configs/internlm2/).
# The report (before_after.html / .md / .jsonl) is written to the work dir after each evaluation.
before_after_chat_hook = dict(
    type='BeforeAfterChatHook',
    every_n_iters=None,  # also evaluate every N iterations; None: before the first and after the last
    max_new_tokens=64,  # with max_items, bounds the time of one evaluation
    max_items=16,  # held-out records answered (the first ones of heldout_data)
    train_items=4,  # training records answered and scored apart: memorised vs learned
    choice_candidates=4,  # references of other images each held-out reference competes with
    answer_batch_size=8,  # image questions answered in one generate (InternVL2; 1 = one by one)
    evaluation_inputs=None,  # stock EvaluateChatHook's free questions (no reference), optional
    evaluation_images=None,
)
