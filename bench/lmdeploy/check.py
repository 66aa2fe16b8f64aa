"""LMDeploy serves a converted InternVL2 folder: same greedy answer as our native chat, InternVL2 template.

Runs on the GPU machine, in two Python environments (LMDeploy refuses the project's transformers
4.48), so each step is its own process (``run.sh`` calls them in order):

    python check.py full-size OUT_DIR     # project env: a random full-size InternVL2-2B base + LoRA state,
                                          # converted by xtuner_ext (4-bit drift, reload check)
    python check.py native FOLDER IMAGE QUESTION JSON     # project env: our chat() on the GPU
    python check.py lmdeploy FOLDER IMAGE QUESTION JSON   # LMDeploy env: pipeline((question, image))
    python check.py template FOLDER QUESTION JSON         # LMDeploy env, CPU is enough: the chat
                                                          # template LMDeploy picks and its prompt

Every step writes a JSON (answer, or the error it hit) so one failing step does not hide the others.
"""
import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

MAX_NEW_TOKENS = 24
REPO = Path(__file__).resolve().parents[2]


def write(path, data) -> None:
    Path(path).write_text(json.dumps(data, indent=2, ensure_ascii=False) + '\n', encoding='utf-8')


def full_size(out_dir: str) -> int:
    """A random-weight InternVL2-2B base (with the official remote code), a random 'trained' LoRA state of
    the tutorial config (r=128, nf4 base), and its conversion: the full-size architecture end to end."""
    import torch
    from mmengine.config import Config
    from mmengine.registry import MODELS

    import xtuner_ext  # noqa: F401
    from xtuner_ext.convert.convert_cli import main as convert
    from xtuner_ext.data.sample import make_clot_sample
    from xtuner_ext.models.internvl2.tiny import make_tiny_model

    out = Path(out_dir)
    started = time.time()
    base = make_tiny_model(out / 'internvl2_2b_random', seed=0, preset='internvl2-2b')
    for code in (REPO / '.official' / 'remote_code').glob('*.py'):
        shutil.copy(code, base / code.name)
    data = make_clot_sample(out / 'CLoT_sample', seed=0)
    os.environ.update(XTUNER_EXT_MODEL_PATH=str(base), XTUNER_EXT_DATA_ROOT=str(data))
    config = REPO / 'configs' / 'internvl' / 'internvl2_2b_qlora.py'
    cfg = Config.fromfile(str(config))
    cfg.model.gradient_checkpointing = False
    model = MODELS.build(cfg.model)
    generator = torch.Generator().manual_seed(0)
    for name, param in model.named_parameters():
        if '.lora_B.' in name:  # stands in for training: LoRA B starts at zero
            param.data = (torch.randn(param.shape, generator=generator) * 0.01).to(param)
    torch.save(model.state_dict(), out / 'iter_0.pth')
    del model
    torch.cuda.empty_cache()
    made = time.time() - started
    code = convert([str(config), str(out / 'iter_0.pth'), str(out / 'converted'), '--check-samples', '2'])
    write(out / 'full_size.json', dict(exit_code=code, base_and_state_s=round(made, 1),
                                       total_s=round(time.time() - started, 1)))
    return code


def native(folder: str, image: str, question: str, result: str) -> int:
    from xtuner_ext.chat_cli import ChatSession

    started = time.time()
    session = ChatSession(folder, image, device='cuda', max_new_tokens=MAX_NEW_TOKENS)
    prompt = session.processor.prompt(question, None, [len(session.pixel_values)])
    answer = session.ask(question)
    write(result, dict(folder=folder, answer=answer, seconds=round(time.time() - started, 1),
                       prompt_head=prompt.split('<img>')[0], tiles=len(session.pixel_values)))
    return 0


def lmdeploy(folder: str, image: str, question: str, result: str) -> int:
    from lmdeploy import GenerationConfig, PytorchEngineConfig, pipeline
    from PIL import Image

    started = time.time()
    pipe = pipeline(folder, trust_remote_code=True,
                    backend_config=PytorchEngineConfig(session_len=8192, cache_max_entry_count=0.2))
    template = pipe.async_engine.chat_template
    loaded = time.time() - started
    out = pipe((question, Image.open(image).convert('RGB')),
               gen_config=GenerationConfig(max_new_tokens=MAX_NEW_TOKENS, do_sample=False, top_k=1))
    rendered = template.messages2prompt([{'role': 'user', 'content': '<img><IMG_CONTEXT></img>\n' + question}])
    write(result, dict(folder=folder, answer=out.text, template=type(template).__name__,
                       prompt_head=rendered.split('<img>')[0], load_s=round(loaded, 1),
                       stop_token_ids=sorted(pipe.async_engine.stop_words or []) if hasattr(
                           pipe.async_engine, 'stop_words') else None))
    pipe.close()
    return 0


def template(folder: str, question: str, result: str) -> int:
    """The template LMDeploy's engine would pick for ``folder`` (``get_chat_template``, as AsyncEngine calls
    it), with the prompt it renders for one image + question: no GPU needed."""
    from lmdeploy.model import get_chat_template

    chosen = get_chat_template(folder, None, trust_remote_code=True)
    rendered = chosen.messages2prompt([{'role': 'user', 'content': '<img><IMG_CONTEXT></img>\n' + question}])
    write(result, dict(folder=folder, template=type(chosen).__name__, prompt=rendered,
                       stop_words=getattr(chosen, 'stop_words', None)))
    return 0


def main(argv) -> int:
    step, args = argv[0], argv[1:]
    try:
        return {'full-size': full_size, 'native': native, 'lmdeploy': lmdeploy, 'template': template}[step](*args)
    except Exception as err:  # report the exact error in the step's JSON, then fail the step
        target = Path(args[-1]) if step != 'full-size' else Path(args[0]) / 'full_size.json'
        write(target, dict(error=f'{type(err).__name__}: {err}', traceback=traceback.format_exc()[-4000:]))
        print(traceback.format_exc(), file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
