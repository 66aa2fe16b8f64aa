"""The last step of ``make demo``: convert the tiny run into an official folder and ask it one
held-out question, the way a user checks a converted model (``xtuner-ext chat``)."""
from __future__ import annotations

import json
from pathlib import Path


def first_heldout(data_dir: Path) -> tuple:
    """(image path, question) of the first held-out record of the embedded sample."""
    record = json.loads((data_dir / 'heldout.json').read_text(encoding='utf-8'))[0]
    return str(data_dir / record['image']), record['conversations'][0]['value']


def convert_and_answer(config: Path, checkpoint: Path, save_dir: Path, data_dir: Path) -> int:
    """Run the converter (replacing an earlier demo folder), then chat with the result; exit code."""
    from xtuner_ext.chat_cli import ChatSession

    from .convert_cli import main as convert

    print(f'\nConverting {checkpoint.name} into the official InternVL2 layout: {save_dir}')
    code = convert([str(config), str(checkpoint), str(save_dir), '--overwrite', '--check-samples', '2'])
    if code != 0:
        return code
    image, question = first_heldout(data_dir)
    answer = ChatSession(str(save_dir), image, max_new_tokens=24).ask(question)
    print(f'converted folder, held-out image {Path(image).name}: {answer!r}\n'
          f'  (again with: xtuner-ext chat {save_dir} --image {image} --question "{question.splitlines()[-1]}")')
    return 0
