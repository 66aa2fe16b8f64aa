"""`make demo`: QLoRA-fine-tune the embedded tiny InternVL2 on the embedded CLoT sample with stock
`xtuner train`, show the before/after report its BeforeAfterChatHook wrote, and convert the result
into an official InternVL2 folder, as a short guided run.

    python tools/demo.py [--work-dir work_dirs/demo] [--embedded embedded]

The terminal gets numbered steps, progress bars and the result; everything the libraries and
`xtuner train` log goes to WORK_DIR/demo.log. Exit code 0 only when training succeeded, produced a
checkpoint that loads strictly, and the loss fell.
"""
import argparse
import contextlib
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / 'configs' / 'internvl' / 'internvl2_tiny_qlora.py'
BIN = Path(sys.executable).parent
ITER = re.compile(r'Iter\(train\) \[\s*(\d+)/(\d+)\].*?\bloss: ([0-9.]+)')
STEPS = 4
INDENT = ' ' * 6


def shown(path: Path) -> str:
    """A path as short as it can be said from the current folder."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def step(number: int, text: str) -> None:
    print(f'[{number}/{STEPS}] {text}', flush=True)


def note(text: str) -> None:
    print(INDENT + text, flush=True)


BAR = '{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]'
WAIT = '{desc} [{elapsed}]'  # before the total is known: what is happening, and for how long


def progress(desc: str, total=None) -> tqdm:
    return tqdm(total=total, desc=INDENT + desc, file=sys.stdout, mininterval=0.5, ncols=100,
                bar_format=BAR if total else WAIT)


def log_to_file(log: Path) -> None:
    """This process's library logging (mmengine's print_log, Python logging) goes to ``log`` only; errors
    still reach the terminal. ``xtuner train`` appends its own output to the same file."""
    from mmengine.logging import MMLogger

    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text('', encoding='utf-8')
    logger = MMLogger.get_instance('xtuner_ext_demo', log_file=str(log), file_mode='a')  # print_log's 'current'
    for handler in logger.handlers:
        if not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.ERROR)
    file_handler = logging.FileHandler(log, mode='a', encoding='utf-8')
    file_handler.setFormatter(logging.Formatter('%(asctime)s - %(name)s - %(levelname)s - %(message)s'))
    logging.getLogger().addHandler(file_handler)


# ---- step 1 ----
def ensure_embedded(root: Path) -> tuple:
    """The embedded default: a seeded tiny InternVL2 and the CLoT-style sample (made once)."""
    from xtuner_ext.data.sample import make_clot_sample
    from xtuner_ext.models.internvl2.tiny import make_embedded_model

    model_dir, data_dir = root / 'internvl2_tiny', root / 'CLoT_sample'
    made = []
    if not model_dir.is_dir():
        make_embedded_model(model_dir, seed=0)
        made.append(model_dir)
    if not data_dir.is_dir():
        make_clot_sample(data_dir, seed=0)
        made.append(data_dir)
    kept = [p for p in (model_dir, data_dir) if p not in made]
    note('; '.join(filter(None, [made and 'made ' + ', '.join(map(shown, made)),
                                 kept and 'already there: ' + ', '.join(map(shown, kept))])))
    return model_dir, data_dir


# ---- step 3 ----
def load_strictly(env: dict, checkpoint: Path) -> None:
    """Build the model as the config does and load the checkpoint into it strictly."""
    from mmengine.config import Config
    from mmengine.registry import MODELS

    import xtuner_ext  # noqa: F401  (registers the classes the config names)

    os.environ.update(env)  # the config reads the paths from the environment
    cfg = Config.fromfile(str(CONFIG))
    cfg.model.pretrained_pth = str(checkpoint)
    with progress('loading the checkpoint strictly', total=1) as bar:
        MODELS.build(cfg.model)
        bar.update()


# ---- step 2 ----
class TrainingFailed(Exception):
    pass


def follow(process: subprocess.Popen, log: Path, offset: int) -> list:
    """Show ``xtuner train``'s progress from the lines it appends to ``log``; return ``[(iter, max, loss)]``."""
    seen, pending = [], ''
    with open(log, encoding='utf-8', errors='replace') as text, progress('starting xtuner train') as bar:
        text.seek(offset)
        while True:
            chunk = text.read()
            lines = (pending + chunk).split('\n')
            pending = lines.pop()
            for match in filter(None, map(ITER.search, lines)):
                done, total, loss = int(match.group(1)), int(match.group(2)), float(match.group(3))
                if not seen:  # the first iteration: from here on a bar with an ETA
                    bar.reset(total=total)
                    bar.bar_format = BAR
                    bar.set_description_str(INDENT + 'training', refresh=False)
                seen.append((done, total, loss))
                bar.update(done - bar.n)
                bar.set_postfix(loss=f'{loss:.2f}', refresh=False)
            if not chunk and process.poll() is not None:
                return seen
            bar.refresh()
            time.sleep(0.5)


def last_line(log: Path, offset: int) -> str:
    with open(log, encoding='utf-8', errors='replace') as text:
        text.seek(offset)
        lines = [line for line in text.read().splitlines() if line.strip()]
    return lines[-1] if lines else '(no output)'


def train(work_dir: Path, env: dict, log: Path) -> tuple:
    """Stock ``xtuner train`` in a child whose output goes to ``log``; judged by its exit code, the iterations
    it logged and the checkpoint of its last iteration."""
    (work_dir / 'last_checkpoint').unlink(missing_ok=True)
    path = f'{BIN}{os.pathsep}{os.environ.get("PATH", "")}'  # `xtuner` starts its tool with the first `python`
    offset = log.stat().st_size
    with open(log, 'ab') as out:
        process = subprocess.Popen([str(BIN / 'xtuner'), 'train', str(CONFIG), '--work-dir', str(work_dir)],
                                   env=dict(os.environ, **env, PATH=path), stdout=out, stderr=subprocess.STDOUT)
        seen = follow(process, log, offset)
    if process.returncode != 0:
        raise TrainingFailed(f'xtuner train exited with code {process.returncode}: {last_line(log, offset)}')
    if not seen:
        raise TrainingFailed('xtuner train logged no iteration')
    last_iter, max_iters = seen[-1][:2]
    checkpoint = work_dir / f'iter_{max_iters}.pth'
    if last_iter != max_iters or not checkpoint.is_file():
        raise TrainingFailed(f'training stopped at iteration {last_iter} of {max_iters} (no {checkpoint.name})')
    return checkpoint, [loss for _, _, loss in seen]


# ---- result ----
def show_result(work_dir: Path, history: list) -> bool:
    """The hook's before/after metric deltas and where its report is, and the loss; True when the loss fell."""
    from xtuner_ext.evaluation.report import render_summary

    print('\n' + render_summary(work_dir).replace(str(work_dir), shown(work_dir)))
    first, last = history[:10], history[-10:]
    fell = sum(last) / len(last) < sum(first) / len(first)
    print(f'Loss (running mean of 10 iterations): {sum(first) / len(first):.2f} at the start -> '
          f'{sum(last) / len(last):.2f} after {len(history)} iterations'
          + ('.' if fell else ': it did not fall (see the log).'))
    return fell


# ---- step 4 ----
def convert(checkpoint: Path, save_dir: Path, data_dir: Path, log: Path) -> str:
    """The converter (its tables and bars go to the log), then one held-out question to the converted folder."""
    from xtuner_ext.chat_cli import ChatSession
    from xtuner_ext.convert.convert_cli import main as convert_main
    from xtuner_ext.convert.demo_step import first_heldout

    with progress('merging LoRA, writing and re-checking the folder', total=1) as bar:
        with open(log, 'a', encoding='utf-8') as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = convert_main([str(CONFIG), str(checkpoint), str(save_dir), '--overwrite', '--check-samples', '2'])
        bar.update()
    if code != 0:
        raise TrainingFailed(f'the conversion failed (exit code {code}): {last_line(log, 0)}')
    image, question = first_heldout(data_dir)
    answer = ChatSession(str(save_dir), image, max_new_tokens=24).ask(question)
    note(f'{shown(save_dir)} answers held-out {Path(image).name}: {answer!r}')
    return image


def show_next(model_dir: Path, converted: Path, data_dir: Path, image: str) -> None:
    config = CONFIG.relative_to(REPO)
    print('\nNext, from the repository root:')
    for command, what in [
        ('source .venv/bin/activate', 'the environment `make demo` installed'),
        (f'xtuner-ext chat {shown(converted)} --image {shown(Path(image))}', 'ask the fine-tune yourself'),
        (f'xtuner-ext web {shown(model_dir)} {shown(converted)} --examples {shown(data_dir / "heldout.json")}',
         'base and fine-tune side by side in the browser (http://127.0.0.1:7860)'),
        (f'xtuner train {config} --work-dir work_dirs/tiny', 'this training run, with its full output'),
        (f'python tools/check_data.py {config}', 'check the data a config trains on'),
        ('xtuner list-cfg -p xtuner_ext', 'the configs this package ships'),
    ]:
        print(f'  {command}  # {what}')
    print('  The real model and data: README.md, "Fine-tuning InternVL2-2B on CLoT_cn_2000"')


def run(work_dir: Path, root: Path, log: Path) -> int:
    step(1, 'The embedded default: a seeded tiny InternVL2 and 48 CLoT-style meme records')
    model_dir, data_dir = ensure_embedded(root)
    env = dict(XTUNER_EXT_MODEL_PATH=str(model_dir), XTUNER_EXT_DATA_ROOT=str(data_dir))
    step(2, f'Fine-tune with stock `xtuner train {shown(CONFIG)}`: 4-bit LLM, LoRA, trainable projector;')
    note('its BeforeAfterChatHook asks held-out and training images before, during and after')
    checkpoint, history = train(work_dir, env, log)
    note(f'checkpoint: {shown(checkpoint)} (LoRA and projector weights only)')
    step(3, 'Load that checkpoint strictly; the before/after report')
    load_strictly(env, checkpoint)
    fell = show_result(work_dir, history)
    step(4, 'Convert it into an official InternVL2 folder and ask it a held-out question')
    converted = work_dir / 'converted'
    image = convert(checkpoint, converted, data_dir, log)
    show_next(model_dir, converted, data_dir, image)
    return 0 if fell else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--embedded', default='embedded')
    args = parser.parse_args(argv)
    work_dir, root = Path(args.work_dir).resolve(), Path(args.embedded).resolve()
    log = work_dir / 'demo.log'
    start = time.monotonic()
    print('xtuner_ext demo: QLoRA fine-tuning of a tiny InternVL2 on CLoT-style memes, on this CPU')
    print(f'The full log: {shown(log)}\n', flush=True)
    log_to_file(log)
    try:
        code = run(work_dir, root, log)
    except Exception as err:  # the cause in one line here, the traceback in the log
        logging.getLogger('demo').error('demo failed', exc_info=True)
        reason = str(err) if isinstance(err, TrainingFailed) else f'{type(err).__name__}: {err}'
        print(f'\nerror: {reason}\nThe traceback and everything before it: {shown(log)}', file=sys.stderr)
        return 1
    print(f'\nDone in {time.monotonic() - start:.0f} s.')
    return code


if __name__ == '__main__':
    sys.exit(main())
