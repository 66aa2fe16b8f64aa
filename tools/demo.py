"""`make demo`: QLoRA-fine-tune the embedded tiny InternVL2 on the embedded CLoT sample with stock
`xtuner train`, check what it wrote, and show the before/after report (BeforeAfterChatHook).

    python tools/demo.py [--work-dir work_dirs/demo] [--embedded embedded]

Exit code 0 only when training produced a checkpoint that loads strictly and the loss fell.
"""
import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

from xtuner_ext.evaluation.report import render_summary
from xtuner_ext.web.launch import open_hint

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / 'configs' / 'internvl' / 'internvl2_tiny_qlora.py'
BIN = Path(sys.executable).parent
LOSS = re.compile(r'Iter\(train\) \[\s*(\d+)/(\d+)\].*?\bloss: ([0-9.]+)')


def ensure_embedded(root: Path) -> tuple:
    """The embedded default: a seeded tiny InternVL2 and the CLoT-style sample (made once)."""
    from xtuner_ext.data.sample import make_clot_sample
    from xtuner_ext.models.internvl2.tiny import make_embedded_model

    model_dir, data_dir = root / 'internvl2_tiny', root / 'CLoT_sample'
    if not model_dir.is_dir():
        make_embedded_model(model_dir, seed=0)
    if not data_dir.is_dir():
        make_clot_sample(data_dir, seed=0)
    return model_dir, data_dir


def build_model(env: dict, pretrained_pth=None):
    import xtuner_ext  # noqa: F401  (registers the classes the config names)
    from mmengine.config import Config
    from mmengine.registry import MODELS

    os.environ.update(env)  # the config reads the paths from the environment
    cfg = Config.fromfile(str(CONFIG))
    cfg.model.pretrained_pth = pretrained_pth
    return MODELS.build(cfg.model).eval()


def train(work_dir: Path, env: dict) -> tuple:
    """Stock `xtuner train` (always exits 0), so success is judged by this run's artefacts: its own
    log, and the checkpoint of its last iteration."""
    (work_dir / 'last_checkpoint').unlink(missing_ok=True)
    logs_before = set(work_dir.glob('*/*.log'))
    # `xtuner` starts its tool with the first `python` on PATH: this interpreter's.
    path = f'{BIN}{os.pathsep}{os.environ.get("PATH", "")}'
    subprocess.run([str(BIN / 'xtuner'), 'train', str(CONFIG), '--work-dir', str(work_dir)],
                   env=dict(os.environ, **env, PATH=path), check=False)
    new_logs = sorted(set(work_dir.glob('*/*.log')) - logs_before)
    matches = list(LOSS.finditer(new_logs[-1].read_text(encoding='utf-8'))) if new_logs else []
    if not matches:
        raise SystemExit(f'training logged no iteration under {work_dir}: see the output above')
    last_iter, max_iters = int(matches[-1].group(1)), int(matches[-1].group(2))
    checkpoint = work_dir / f'iter_{max_iters}.pth'
    if last_iter != max_iters or not checkpoint.is_file():
        raise SystemExit(f'training stopped at iteration {last_iter} of {max_iters} (no {checkpoint.name}): '
                         'see the output above')
    return checkpoint, [float(m.group(3)) for m in matches]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--embedded', default='embedded')
    args = parser.parse_args(argv)
    work_dir, root = Path(args.work_dir).resolve(), Path(args.embedded).resolve()

    model_dir, data_dir = ensure_embedded(root)
    env = dict(XTUNER_EXT_MODEL_PATH=str(model_dir), XTUNER_EXT_DATA_ROOT=str(data_dir))
    checkpoint, history = train(work_dir, env)
    build_model(env, pretrained_pth=str(checkpoint))  # the checkpoint loads strictly

    print('\n' + render_summary(work_dir))
    first, last = history[:10], history[-10:]
    print(f'checkpoint: {checkpoint}')
    print(f'loss (10-iteration running mean): {first[0]:.3f} at start -> {last[-1]:.3f} after {len(history)} '
          'iterations')
    if sum(last) / len(last) >= sum(first) / len(first):
        print('error: the loss did not fall', file=sys.stderr)
        return 1
    from xtuner_ext.convert.demo_step import convert_and_answer
    code = convert_and_answer(CONFIG, checkpoint, work_dir / 'converted', data_dir)
    print(open_hint(model_dir, CONFIG, checkpoint, data_dir / 'heldout.json'))
    return code


if __name__ == '__main__':
    sys.exit(main())
