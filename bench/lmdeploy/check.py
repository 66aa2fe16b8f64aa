"""LMDeploy serves a converted InternVL2 folder: same greedy answer as our native chat, InternVL2 template.

Runs on the GPU machine, in two Python environments (LMDeploy refuses the project's transformers
4.48), so each step is its own process (``run.sh`` calls them in order):

    python check.py full-size OUT_DIR     # project env: a random full-size InternVL2-2B base + LoRA state,
                                          # converted by xtuner_ext (4-bit drift, reload check)
    python check.py native FOLDER IMAGE QUESTION JSON     # project env: our chat() on the GPU
    python check.py lmdeploy FOLDER IMAGE QUESTION JSON   # LMDeploy env: pipeline((question, image))
    python check.py agree FOLDER IMAGE QUESTION LMDEPLOY_JSON JSON   # project env: our greedy ids beside
                                          # LMDeploy's, and our logits along LMDeploy's answer (ties)
    python check.py template FOLDER QUESTION JSON         # LMDeploy env, CPU is enough: the chat
                                                          # template LMDeploy picks and its prompt

Greedy decoding in bf16 by two engines agrees token for token only while the top two logits are
further apart than the engines' rounding differences. ``agree`` therefore also runs our model
teacher-forced along LMDeploy's answer and reports, at every position, how far LMDeploy's token is
below our top-1 logit: 0 everywhere means the same greedy answer; a divergence whose gap is within
bf16 noise (TIE_LOGITS) is a near-tie, not a different model or template.

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
TIE_LOGITS = 0.125  # bf16 keeps 8 significant bits: logits of magnitude 8-16 are rounded to 1/16-1/8
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
    write(result, dict(folder=folder, answer=out.text, token_ids=list(out.token_ids), template=type(template).__name__,
                       prompt_head=rendered.split('<img>')[0], load_s=round(loaded, 1),
                       stop_token_ids=sorted(pipe.async_engine.stop_words or []) if hasattr(
                           pipe.async_engine, 'stop_words') else None))
    pipe.close()
    return 0


def agree(folder: str, image: str, question: str, lmdeploy_json: str, result: str) -> int:
    """Our greedy token ids beside LMDeploy's, and our logit gap along LMDeploy's answer."""
    import torch

    from xtuner_ext.chat_cli import ChatSession

    device = 'cuda' if torch.cuda.is_available() else 'cpu'  # the CPU only for a smoke test
    theirs = json.loads(Path(lmdeploy_json).read_text(encoding='utf-8'))
    their_ids = theirs['token_ids']
    session = ChatSession(folder, image, device=device, max_new_tokens=MAX_NEW_TOKENS)
    model, processor = session.model, session.processor
    tokenizer = processor.tokenizer
    prompt = processor.prompt('<image>\n' + question, None, [len(session.pixel_values)])
    prompt_ids = tokenizer(prompt, return_tensors='pt')['input_ids'].to(device)
    model.img_context_token_id = processor.img_context_token_id
    stop = tokenizer.convert_tokens_to_ids(processor.stop_token)
    with torch.no_grad():
        ours = model.generate(pixel_values=session.pixel_values, input_ids=prompt_ids,
                              attention_mask=torch.ones_like(prompt_ids), max_new_tokens=MAX_NEW_TOKENS,
                              do_sample=False, eos_token_id=stop)[0].tolist()
        forced = torch.cat([prompt_ids, torch.tensor([their_ids], device=device)], dim=1)
        logits = model(pixel_values=session.pixel_values, input_ids=forced).logits[0].float()
    steps = logits[prompt_ids.shape[1] - 1:-1]  # the logits that chose each of LMDeploy's tokens
    top = steps.argmax(-1)
    gaps = (steps.max(-1).values - steps.gather(1, torch.tensor(their_ids, device=device)[:, None])[:, 0]).tolist()
    differ = [i for i, t in enumerate(their_ids) if int(top[i]) != t]
    ours_cut = ours[:len(ours) - 1] if ours and ours[-1] == stop else ours
    write(result, dict(folder=folder, our_ids=ours_cut, their_ids=their_ids,
                       same_ids=ours_cut == [t for t in their_ids if t != stop],
                       our_text=tokenizer.decode(ours_cut, skip_special_tokens=True),
                       their_text=theirs.get('answer'), positions_where_our_top1_differs=differ,
                       gaps_there=[round(gaps[i], 4) for i in differ], max_gap=round(max(gaps or [0.0]), 4),
                       tie_logits=TIE_LOGITS, same_up_to_ties=max(gaps or [0.0]) <= TIE_LOGITS,
                       prompt_tokens=int(prompt_ids.shape[1])))
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
        steps = {'full-size': full_size, 'native': native, 'lmdeploy': lmdeploy, 'agree': agree, 'template': template}
        return steps[step](*args)
    except Exception as err:  # report the exact error in the step's JSON, then fail the step
        target = Path(args[-1]) if step != 'full-size' else Path(args[0]) / 'full_size.json'
        write(target, dict(error=f'{type(err).__name__}: {err}', traceback=traceback.format_exc()[-4000:]))
        print(traceback.format_exc(), file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
