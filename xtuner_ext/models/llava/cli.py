"""``xtuner-ext llava export|chat``: finish the LLaVA flow after ``xtuner train``.

    xtuner-ext llava export CONFIG iter_N.pth OUT          # llava-hf folder, LoRA merged
    xtuner-ext llava chat OUT --image IMG -q QUESTION [-q ...]   # transformers' own Llava classes
"""
from __future__ import annotations

import argparse
from typing import List, Optional


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='xtuner-ext llava', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest='command', required=True)
    export = commands.add_parser('export', help='write the transformers llava-hf layout (LoRA merged)')
    export.add_argument('config', help='the training config')
    export.add_argument('checkpoint', help='its iter_N.pth')
    export.add_argument('out', help='folder to write')
    talk = commands.add_parser('chat', help='greedy answers about an image, with transformers only')
    talk.add_argument('model', help='a llava-hf folder (from `xtuner-ext llava export`)')
    talk.add_argument('--image', required=True)
    talk.add_argument('-q', '--question', action='append', required=True, help='repeat for several questions')
    talk.add_argument('--max-new-tokens', type=int, default=64)
    return parser


def hf_chat(model, processor, image, question: str, max_new_tokens: int = 64) -> str:
    """One greedy turn with ``LlavaForConditionalGeneration`` and its processor's chat template."""
    import torch
    from PIL import Image

    image = Image.open(image).convert('RGB') if isinstance(image, str) else image
    messages = [{'role': 'user', 'content': [{'type': 'image'}, {'type': 'text', 'text': question}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(images=image, text=prompt, return_tensors='pt').to(model.device)
    inputs.pop('token_type_ids', None)  # fast tokenizers return it; Llava does not take it
    with torch.no_grad():
        output = model.generate(**inputs, do_sample=False, max_new_tokens=max_new_tokens,
                                pad_token_id=processor.tokenizer.pad_token_id)
    return processor.tokenizer.decode(output[0, inputs['input_ids'].shape[1]:], skip_special_tokens=True).strip()


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == 'export':
        from .export import export_from_checkpoint
        print(f'wrote {export_from_checkpoint(args.config, args.checkpoint, args.out)}')
        return 0
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    model = LlavaForConditionalGeneration.from_pretrained(args.model).eval()
    processor = AutoProcessor.from_pretrained(args.model, use_fast=False)  # InternLM2's exact (slow) tokenizer
    for question in args.question:
        print(f'Q: {question}\nA: {hf_chat(model, processor, args.image, question, args.max_new_tokens)}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
