"""One GPU, same batches: our InternVL2 QLoRA step (each speed lever alone, then together) beside
stock XTuner's ``InternVL_V1_5``, plus a profile of where our step's time goes.

    python bench/side_by_side.py --preset internvl2-2b --stock-code .official/remote_code --out $OUT/bench.json \
        --profile $OUT/profile.txt --quick      # the lead's GPU run: < 8 minutes
    python bench/side_by_side.py --preset tiny --quick --out /tmp/bench.json                 # CPU smoke test

Ours and stock each run in a fresh child process (``--impl ours`` / ``--impl stock``; the default
``both`` starts the two in turn and merges their rows), so neither inherits the other's memory.
``--quick`` runs the settings marked quick with 1 warm-up and 3 timed steps; ``--settings`` keeps
the settings whose names start with the given prefixes.

A step is forward + backward + gradient clipping + AdamW on the trainables, the shipped config's
recipe (nf4 LLM, LoRA r=128 with dropout 0.05, fp32 trainables); ours under bf16 autocast, stock
under fp16 autocast with a grad scaler as its configs say. Random weights (no real ones exist
here), full-size architecture. MFU counts ViT forward, LLM forward, the LLM's input-gradient
backward and LoRA weight gradients on the real (unpadded) tokens, not recomputation, against
790 TFLOP/s (bf16 dense matmul measured on the H200).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.clot_like import SHAPES, instances, token_counts  # noqa: E402
from xtuner_ext.data.internvl2_dataset import internvl2_collate_fn  # noqa: E402
from xtuner_ext.data.packing import internvl2_packed_collate_fn  # noqa: E402
from xtuner_ext.fileio import write_atomically  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PEAK_FLOPS = 790e12
GIB = 1024 ** 3
CUDA = torch.cuda.is_available()  # the CPU runs the same code as a smoke test (no memory figures)
DEVICE = 'cuda' if CUDA else 'cpu'
# A setting: packed rows, packed-attention kernel, ViT under no_grad, fused loss, recompute (None:
# off; 'all' or a number of LLM layers), LoRA dropout on, peft's input cast on, Liger RMSNorm/SwiGLU/RoPE,
# LoRA update inside addmm, samples per optimizer step, micro-batches they are split into (gradients
# accumulated, each micro-batch's loss divided by their count as mmengine's accumulation does), rows
# of the fused loss's padded head (1: unpadded), decoder layers under torch.compile (regional; an experiment,
# not a shipped switch), outputs the recomputed layers keep (recompute_keeps), batches in pinned host memory
# (the configs' pin_memory=True), the frozen ViT outside autocast in its own dtype.
BEFORE = dict(packed=False, kernel='auto', vit_no_grad=False, fused=None, recompute='all', dropout=True,
              peft_cast=True, liger=False, addmm=False, micro=4, split=1, head_rows=1, compile=False,
              keeps=(), pinned=False, vit_own_dtype=False)
BOTH = ('attention', 'down_proj')  # recompute_keeps: every output a recomputed layer can keep
SHIPPED_RECOMPUTE = 14  # configs/internvl/internvl2_2b_qlora.py recompute_llm_layers (of 24)
# the 2B config's model switches (batch_size 16, one packed row)
SHIPPED = dict(BEFORE, packed=True, vit_no_grad=True, fused='liger', recompute=SHIPPED_RECOMPUTE, addmm=True,
               liger=True, head_rows=128, micro=16, pinned=True, vit_own_dtype=True)
EARLIER = dict(SHIPPED, head_rows=1)  # shipped before the padded head
RECIPE_24GB = dict(SHIPPED, micro=4, recompute='all')  # the README's 24 GB-card switches
# the fastest 4 x 6656 within 24 GiB (README's long-sample recipe)
BEST_24GB = dict(RECIPE_24GB, kernel='cudnn', recompute=19, keeps=('attention',))
# name -> (setting, in --quick)
LEVERS = {
    'before (padded, ViT activations kept)': (BEFORE, True),
    'lever: ViT under no_grad': (dict(BEFORE, vit_no_grad=True), False),
    'lever: packed rows, split attention': (dict(BEFORE, packed=True, kernel='split'), False),
    'lever: packed rows, varlen attention': (dict(BEFORE, packed=True, kernel='varlen'), False),
    'lever: Liger fused loss': (dict(BEFORE, fused='liger'), False),
    'lever: LoRA addmm': (dict(BEFORE, addmm=True), False),
    'lever: micro-batch 16 (padded)': (dict(BEFORE, micro=16), False),
    'peft path (no addmm), input cast on': (dict(SHIPPED, addmm=False), False),
    'peft path (no addmm), input cast off': (dict(SHIPPED, addmm=False, peft_cast=False), False),
    '24 GB recipe: shipped switches, micro 4, recompute all': (RECIPE_24GB, True),
    '24 GB recipe, recompute 20 of 24': (dict(RECIPE_24GB, recompute=20), True),
    'shipped before the padded head (varlen, addmm, Liger layers, recompute 14)': (EARLIER, True),
    'shipped: + fused loss on the head padded to 128 rows': (SHIPPED, True),
    'shipped + cuDNN attention': (dict(SHIPPED, kernel='cudnn'), True),
    'shipped, Liger layers off (RMSNorm, SwiGLU, RoPE)': (dict(SHIPPED, liger=False), True),
    'shipped, attention kept in the recomputed layers': (dict(SHIPPED, keeps=('attention',)), True),
    'shipped, attention + down_proj kept in the recomputed layers': (dict(SHIPPED, keeps=BOTH), True),
    'shipped, attention + down_proj kept, recompute 12 of 24': (dict(SHIPPED, keeps=BOTH, recompute=12), True),
    'shipped, pageable batches (pin_memory off)': (dict(SHIPPED, pinned=False), True),
    'shipped, ViT under autocast (fp32 LayerNorms)': (dict(SHIPPED, vit_own_dtype=False), True),
    'shipped, recompute 10 of 24': (dict(SHIPPED, recompute=10), True),
    'shipped, recompute 18 of 24': (dict(SHIPPED, recompute=18), False),
    'shipped, no recompute': (dict(SHIPPED, recompute=None), True),
    'shipped, LoRA dropout off (changes training)': (dict(SHIPPED, dropout=False), False),
}
LONG = {'before (padded, ViT activations kept)': (BEFORE, True),
        '24 GB recipe before the padded head': (dict(RECIPE_24GB, head_rows=1), True),
        '24 GB recipe (micro 4, recompute all)': (RECIPE_24GB, True),
        '24 GB recipe + cuDNN attention': (dict(RECIPE_24GB, kernel='cudnn'), True),
        '24 GB recipe + cuDNN, attention kept': (dict(RECIPE_24GB, kernel='cudnn', keeps=('attention',)), True),
        '24 GB recipe + cuDNN, attention + down_proj kept': (dict(RECIPE_24GB, kernel='cudnn', keeps=BOTH), True),
        '24 GB recipe + cuDNN, recompute 19 of 24': (dict(RECIPE_24GB, kernel='cudnn', recompute=19), True),
        '24 GB long-sample recipe: + cuDNN, recompute 19 of 24, attention kept': (BEST_24GB, True),
        '24 GB recipe + cuDNN, recompute 20 of 24, attention + down_proj kept':
            (dict(BEST_24GB, keeps=BOTH, recompute=20), True),
        '24 GB recipe + cuDNN, recompute 19 of 24, attention + down_proj kept (over 24 GiB)':
            (dict(BEST_24GB, keeps=BOTH), True),
        # one lever off at a time, from the long-sample recipe
        'long-sample recipe, pageable batches (pin_memory off)': (dict(BEST_24GB, pinned=False), True),
        'long-sample recipe, ViT under autocast (fp32 LayerNorms)': (dict(BEST_24GB, vit_own_dtype=False), True),
        '24 GB recipe, Liger layers off (RMSNorm, SwiGLU, RoPE)': (dict(RECIPE_24GB, liger=False), True),
        # where the time goes (not training settings): the step without recomputation / without LoRA dropout
        'diagnostic: long-sample recipe, no recompute': (dict(BEST_24GB, recompute=None), False),
        'diagnostic: long-sample recipe, LoRA dropout off': (dict(BEST_24GB, dropout=False), False),
        # decoder layers under torch.compile: measured faster with Liger's layers off, not a shipped switch
        'experiment: long-sample recipe, decoder layers compiled': (dict(BEST_24GB, compile=True), False),
        'experiment: long-sample recipe, decoder layers compiled, Liger layers off':
            (dict(BEST_24GB, compile=True, liger=False), False),
        'experiment: recompute 19 of 24, attention + down_proj kept, decoder layers compiled, Liger layers off':
            (dict(BEST_24GB, compile=True, liger=False, keeps=BOTH), False),
        'experiment: recompute 20 of 24, attention + down_proj kept, decoder layers compiled, Liger layers off':
            (dict(BEST_24GB, compile=True, liger=False, keeps=BOTH, recompute=20), False),
        f'shipped switches (recompute {SHIPPED_RECOMPUTE} of 24), micro 4': (dict(SHIPPED, micro=4), False),
        # the same 4 samples per step, one sample per micro-batch (4 accumulated): a quarter of the
        # activations, but 4x the kernel launches (measured slower: the CPU cannot keep the GPU busy)
        '24 GB recipe, 4 x 1 sample, recompute 4 of 24': (dict(RECIPE_24GB, split=4, recompute=4), False),
        '24 GB recipe, 4 x 1 sample, no recompute': (dict(RECIPE_24GB, split=4, recompute=None), False),
        '24 GB recipe, 2 x 2 samples, recompute 12 of 24': (dict(RECIPE_24GB, split=2, recompute=12), False)}


def shipped_model_kwargs(model_dir: str) -> dict:
    """The model dict of the shipped 2B config (same LoRA, quantization, processor)."""
    from mmengine.config import Config

    os.environ['XTUNER_EXT_MODEL_PATH'] = model_dir
    cfg = Config.fromfile(str(REPO / 'configs' / 'internvl' / 'internvl2_2b_qlora.py'))
    kwargs = cfg.model.to_dict()
    kwargs.pop('type')
    return kwargs


def model_flops(config, lengths, tiles: int, answer_tokens: int, lora_r: int) -> float:
    """Useful FLOPs of one step (see module docstring)."""
    v, llm = config.vision, config.llm_config
    h, inter, layers = llm['hidden_size'], llm['intermediate_size'], llm['num_hidden_layers']
    kv = h // llm['num_attention_heads'] * llm['num_key_value_heads']
    vit_tokens = (v.image_size // v.patch_size) ** 2 + 1
    vit_linear = v.num_hidden_layers * (4 * v.hidden_size ** 2 + 2 * v.hidden_size * v.intermediate_size)
    vit = tiles * (2 * vit_linear * vit_tokens + 4 * v.num_hidden_layers * vit_tokens ** 2 * v.hidden_size)
    linear = layers * (2 * h * h + 2 * h * kv + 3 * h * inter)
    lora = layers * lora_r * (2 * (h + h) + 2 * (h + kv) + 3 * (h + inter))
    tokens = sum(lengths)
    attention = sum(4 * layers * n * n * h / 2 for n in lengths)  # causal: half of QK^T and AV
    llm_flops = 4 * linear * tokens + 2 * attention + 6 * lora * tokens
    head = 4 * h * llm['vocab_size'] * answer_tokens
    return vit + llm_flops + head


def apply_setting(model, setting: dict) -> None:
    from peft.tuners.tuners_utils import BaseTunerLayer
    from xtuner_ext.models import answer_loss
    from xtuner_ext.models.liger_layers import use_liger_layers
    from xtuner_ext.models.lora_addmm import use_lora_addmm
    from xtuner_ext.models.packed_attention import enable_packed_attention

    model.frozen_vision_no_grad = setting['vit_no_grad']
    model.frozen_vision_own_dtype = setting['vit_own_dtype']
    model.fused_loss = setting['fused']
    recompute = setting['recompute']
    layers = len(model._decoder_and_head()[0].layers)  # a tiny preset has fewer than the 2B's 24
    model.set_recompute(recompute is not None, None if recompute in (None, 'all') else min(recompute, layers),
                        setting['keeps'] if recompute is not None else ())
    enable_packed_attention(model.model.language_model, setting['kernel'])
    use_liger_layers(model._decoder_and_head()[0], setting['liger'])
    use_lora_addmm(model.model, setting['addmm'])
    answer_loss.HEAD_ROWS_MULTIPLE = setting['head_rows']
    for layer in model._decoder_and_head()[0].layers:
        if setting['compile']:
            layer.compile()
        else:
            layer._compiled_call_impl = None  # nn.Module.compile's switch: back to eager
    for name, module in model.named_modules():
        if name.endswith('lora_dropout.default'):
            module.p = 0.05 if setting['dropout'] else 0.0
        if isinstance(module, BaseTunerLayer):
            module.cast_input_dtype_enabled = setting['peft_cast']


def synchronize() -> None:
    if CUDA:
        torch.cuda.synchronize()


def time_steps(step, warmup: int, steps: int) -> dict:
    for _ in range(warmup):
        step()
    synchronize()
    if CUDA:
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        synchronize()
        times.append(time.perf_counter() - start)
    return dict(step_s=statistics.median(times), peak_allocated_gib=torch.cuda.max_memory_allocated() / GIB if CUDA else 0,
                peak_reserved_gib=torch.cuda.max_memory_reserved() / GIB if CUDA else 0)


def free_memory() -> None:
    gc.collect()
    if CUDA:
        torch.cuda.empty_cache()


def to_device(data: dict) -> dict:
    return {k: v.to(DEVICE, non_blocking=True) if torch.is_tensor(v) else v for k, v in data.items()}


def ours_step(model, optimizer, batches: list):
    """One optimizer step over the micro-batches (each loss / their count, as mmengine accumulates)."""
    params = [p for p in model.parameters() if p.requires_grad]

    def step():
        for batch in batches:
            with torch.autocast(DEVICE, dtype=torch.bfloat16):
                loss = model(to_device(batch['data']), mode='loss')['loss']
            (loss / len(batches)).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def row(impl, setting, shape, items, batches: list, timing, config, lora_r) -> dict:
    per_batch = [token_counts(batch) for batch in batches]
    counts = {key: sum(c[key] for c in per_batch) for key in per_batch[0]}
    lengths = [len(x['input_ids']) for x in items]
    answers = sum(int((x['labels'] != -100).sum()) for x in items)
    flops = model_flops(config, lengths, counts['tiles'], answers, lora_r)
    step = timing['step_s']
    return dict(impl=impl, setting=setting, shape=shape, micro_batch=len(items) // len(batches),
                micro_batches=len(batches), step_s=round(step, 4),
                samples_per_s=round(len(items) / step, 2), real_tokens_per_s=round(counts['real_tokens'] / step),
                processed_tokens_per_s=round(counts['processed_tokens'] / step),
                peak_allocated_gib=round(timing['peak_allocated_gib'], 2),
                peak_reserved_gib=round(timing['peak_reserved_gib'], 2), mfu=round(flops / step / PEAK_FLOPS, 3),
                model_tflop=round(flops / 1e12, 1))


def bench_ours(model_dir, processor, shapes, args, rows, profile_out):
    from xtuner_ext.models.internvl2_qlora import InternVL2QLoRA

    kwargs = shipped_model_kwargs(model_dir)
    model = InternVL2QLoRA(**dict(kwargs, fused_loss=None, recompute_llm_layers=None, liger_layers=False,
                                   lora_addmm=False))  # the settings set these
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-5, weight_decay=0.05)
    lora_r = kwargs['llm_lora']['r']
    rows.append(dict(impl='ours', setting='varlen kernel probe (auto falls back to split when it fails)',
                     error=varlen_probe(model) or 'passed'))
    print(json.dumps(rows[-1]), flush=True)
    for shape in shapes:
        for name, setting in selected(LEVERS if shape == 'clot' else LONG, args):
            items, batches = setting_batches(processor, shape, setting)
            apply_setting(model, setting)
            try:
                timing = time_steps(ours_step(model, optimizer, batches), args.warmup, args.steps)
                rows.append(row('ours', name, shape, items, batches, timing, model.model.config, lora_r))
            except Exception as err:  # noqa: BLE001  (one setting failing must not lose the others' rows)
                rows.append(dict(impl='ours', setting=name, shape=shape, error=failure(err)))
                optimizer.zero_grad(set_to_none=True)  # no gradients of a failed step in the next row's memory
            print(json.dumps(rows[-1]), flush=True)
            free_memory()
    if profile_out:
        settings, default = (LEVERS, SHIPPED) if args.profile_shape == 'clot' else (LONG, BEST_24GB)
        name = args.profile_setting or next(n for n, (s, _) in settings.items() if s is default)
        setting = settings[name][0]
        apply_setting(model, setting)
        profile(ours_step(model, optimizer, setting_batches(processor, args.profile_shape, setting)[1]),
                profile_out, f'{name}, shape {args.profile_shape}')
    del model, optimizer
    free_memory()


def setting_batches(processor, shape: str, setting: dict):
    """The step's items (``micro`` samples of the shape) and their collated micro-batches."""
    items = instances(processor, shape, repeat=max(1, setting['micro'] // 4))[:setting['micro']]
    collate = internvl2_packed_collate_fn if setting['packed'] else internvl2_collate_fn
    size = len(items) // setting['split']
    batches = [collate(items[start:start + size]) for start in range(0, len(items), size)]
    if setting['pinned'] and CUDA:  # what the dataloader's pin_memory thread hands the step
        for batch in batches:
            batch['data'] = {k: v.pin_memory() if torch.is_tensor(v) else v for k, v in batch['data'].items()}
    return items, batches


def varlen_probe(model) -> str:
    """Whether torch's varlen kernel ran forward + backward here, for this LLM's head size."""
    from xtuner_ext.models.packed_attention import _varlen_function, _varlen_probe_failure

    if not CUDA or _varlen_function() is None:
        return 'not tried (no CUDA or no torch.nn.attention.varlen)'
    config = model._decoder_and_head()[0].config
    head_dim = getattr(config, 'head_dim', None) or config.hidden_size // config.num_attention_heads
    return _varlen_probe_failure(torch.device('cuda', torch.cuda.current_device()), torch.bfloat16, head_dim)


def selected(settings: dict, args):
    """(name, setting) pairs that --quick and --settings keep."""
    for name, (setting, quick) in settings.items():
        if args.quick and not quick:
            continue
        if args.settings and not any(name.startswith(prefix) for prefix in args.settings):
            continue
        yield name, setting


def failure(err: Exception) -> str:
    kind = 'out of memory' if isinstance(err, torch.cuda.OutOfMemoryError) else type(err).__name__
    return f'{kind}: {err}'[:300]


def profile(step, out: Path, title: str) -> None:
    """Top CUDA ops of two steps of one setting (after warm-up), then the same ops split by input
    shape (which tensors the copies and elementwise kernels move)."""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    step()
    synchronize()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if CUDA else [])
    with torch_profile(activities=activities, record_shapes=True) as prof:
        for _ in range(2):
            step()
        synchronize()
    sort = 'cuda_time_total' if CUDA else 'cpu_time_total'
    table = prof.key_averages().table(sort_by=sort, row_limit=40, max_name_column_width=60)
    shapes = prof.key_averages(group_by_input_shape=True).table(sort_by=sort, row_limit=40, max_name_column_width=40,
                                                               max_shapes_column_width=80)
    text = f'Profile of two steps: {title}\n\n{table}\n\nBy input shape:\n{shapes}'
    write_atomically(out, text.encode('utf-8'))
    print(text, flush=True)


def bench_stock(model_dir, processor, shapes, args, rows):
    from bench.stock_xtuner import build_stock, remote_code_folder, stock_batch

    folder = remote_code_folder(Path(model_dir), Path(args.stock_code).resolve(), Path(args.root) / 'stock_model')
    model = build_stock(folder, lora_r=args.stock_lora_r, quantize=CUDA)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=2e-5, weight_decay=0.05)
    scaler = torch.amp.GradScaler(DEVICE, enabled=CUDA)
    for shape in shapes:
        items = instances(processor, shape)
        data = stock_batch(items, DEVICE)

        def step():
            with torch.autocast(DEVICE, dtype=torch.float16 if CUDA else torch.bfloat16):
                loss = model(data, mode='loss')['loss']
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
        try:
            timing = time_steps(step, args.warmup, args.steps)
            rows.append(row('stock InternVL_V1_5', 'stock (eager attention, fp16 AMP)', shape, items,
                            [internvl2_collate_fn(items)], timing, _our_config(model_dir), 128))
        except Exception as err:  # noqa: BLE001
            rows.append(dict(impl='stock InternVL_V1_5', shape=shape, error=failure(err)))
        print(json.dumps(rows[-1]), flush=True)
        free_memory()


def _our_config(model_dir):
    from xtuner_ext.models.internvl2 import InternVLChatConfig
    return InternVLChatConfig.from_pretrained(model_dir)


def markdown(rows) -> str:
    cols = ['impl', 'setting', 'shape', 'micro_batch', 'micro_batches', 'step_s', 'samples_per_s', 'real_tokens_per_s',
            'processed_tokens_per_s', 'peak_allocated_gib', 'peak_reserved_gib', 'mfu']
    lines = ['| ' + ' | '.join(cols) + ' |', '|' + '---|' * len(cols)]
    for r in rows:
        lines.append('| ' + ' | '.join(str(r.get(c, r.get('error', '') if c == 'step_s' else '')) for c in cols) + ' |')
    return '\n'.join(lines)


def run_impl(args) -> list:
    """This process benchmarks one implementation (ours or stock) and returns its rows."""
    from bench.train_step import prepare
    from xtuner_ext.models.internvl2 import InternVL2Processor

    paths = prepare(Path(args.root).resolve(), args.preset)
    processor = InternVL2Processor.from_pretrained(paths['model_dir'], max_dynamic_patch=6)
    rows = []
    if args.impl == 'ours':
        bench_ours(paths['model_dir'], processor, args.shapes, args, rows, Path(args.profile) if args.profile else None)
        return rows
    try:
        bench_stock(paths['model_dir'], processor, args.shapes, args, rows)
    except Exception:  # noqa: BLE001  (report why stock did not run)
        rows.append(dict(impl='stock InternVL_V1_5', error=traceback.format_exc()[-1500:]))
        print(rows[-1]['error'], flush=True)
    return rows


def run_children(argv: list, args) -> list:
    """Ours, then stock (with --stock-code), each in a fresh process: clean GPU memory for both."""
    rows = []
    for impl in ['ours'] + (['stock'] if args.stock_code else []):
        out = Path(f'{args.out}.{impl}.json')
        code = subprocess.run([sys.executable, __file__, *argv, '--impl', impl, '--out', str(out)]).returncode
        if out.is_file():
            rows += json.loads(out.read_text(encoding='utf-8'))['rows']
        if code:
            rows.append(dict(impl=impl, error=f'the {impl} process exited with {code} (its log is above)'))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--preset', default='internvl2-2b')
    parser.add_argument('--root', default='work_dirs/bench')
    parser.add_argument('--shapes', nargs='+', default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--steps', type=int, default=4)
    parser.add_argument('--stock-code', help='official remote code: .official/remote_code (git-ignored; see bench/stock_xtuner.py)')
    parser.add_argument('--profile', help='write the profile table here')
    parser.add_argument('--profile-shape', default='clot', choices=list(SHAPES), help='the profiled shape')
    parser.add_argument('--profile-setting', help='the profiled setting (default: the shipped one of that shape)')
    parser.add_argument('--stock-lora-r', type=int, default=128)
    parser.add_argument('--settings', nargs='+', help='only the settings whose names start with these')
    parser.add_argument('--quick', action='store_true', help='the settings marked quick, 1 warm-up + 3 timed steps')
    parser.add_argument('--impl', choices=['both', 'ours', 'stock'], default='both',
                        help='both: ours, then stock, each in a fresh child process')
    parser.add_argument('--out', required=True)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.quick:
        args.warmup, args.steps = 1, 3
    rows = run_children(argv, args) if args.impl == 'both' else run_impl(args)
    table = markdown(rows)
    print(table)
    write_atomically(Path(args.out), json.dumps(dict(rows=rows, table=table), indent=1).encode('utf-8'))
    return 0


if __name__ == '__main__':
    sys.exit(main())
