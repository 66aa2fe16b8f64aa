#!/usr/bin/env bash
# Several GPUs on one host: samples/s and peak memory per GPU of the 2B QLoRA config (random weights of the
# real architecture, bench/train_step.py) on 1 vs N GPUs under DeepSpeed ZeRO-2, then a kill-and-resume check
# with N ranks (final trainable weights of the resumed run == those of an uninterrupted run).
#
#   bash bench/multi_gpu.sh prepare           # here (network): add DeepSpeed and its deps to .carry/whl
#   bash bench/multi_gpu.sh run [N] [OUT]     # on the GPU machine (nvidia-h200-x2 or larger), N=2 by default
#   bash bench/multi_gpu.sh resume [N] [OUT]  # there too: kill-and-resume, DDP and ZeRO-2
#   bash bench/multi_gpu.sh smoke             # here, on the CPU: the same steps, tiny preset, 2 gloo ranks, DDP
#
# `run`/`resume` expect the project carry (bash ../shared/device/prepare_carry.sh, then `prepare`) and write
# OUT/{one_rank,ranks_N}/summary.json and OUT/{ddp,zero2}/resume.json (OUT: $OUT, else work_dirs/multi_gpu).
# Samples/s are for all ranks together (per-rank batch x ranks / median step); memory is rank 0's peak
# allocated MiB (mmengine logs rank 0).
set -euo pipefail
cd "$(dirname "$0")/.."
MODE="${1:-}"
RANKS="${2:-2}"

prepare() {
  local carry=.carry/whl py="${PYTHON:-python3}"
  mkdir -p "$carry"
  DS_BUILD_OPS=0 "$py" -m pip wheel -q --no-deps -w "$carry" deepspeed==0.18.9  # pure Python: ops JIT there
  "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
      -d "$carry" hjson==3.1.0 msgpack==1.2.4 ninja==1.13.2 py-cpuinfo==9.0.0
}

install_carry() {
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
      .carry/whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD/.carry/bnb:$PWD PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1
}

# one measured run: RANKS PRESET DEEPSPEED ROOT EXTRA_CFG_OPTIONS...
measure() {
  local ranks=$1 preset=$2 ds=$3 root=$4
  shift 4
  NPROC_PER_NODE=$ranks PORT=$((29500 + RANDOM % 1000)) python3 bench/train_step.py --preset "$preset" \
      --root "$root" --deepspeed "$ds" --out "$root/summary.json" "$@" > "$root.log" 2>&1 || true
  python3 - "$root/summary.json" "$ranks" <<'EOF'
import json, sys
summary = json.load(open(sys.argv[1]))
ranks = int(sys.argv[2])
per_rank = summary.get('samples_per_s')
summary.update(ranks=ranks, samples_per_s_all_ranks=round(per_rank * ranks, 2) if per_rank else None)
json.dump(summary, open(sys.argv[1], 'w'), indent=2)
print(json.dumps(summary))
EOF
}

# kill-and-resume with N ranks against an uninterrupted run: tests/e2e/test_multi_rank.py's check, as a script
resume_check() {  # RANKS PRESET DEEPSPEED OUT CFG_OPTIONS...
  local ranks=$1 preset=$2 ds=$3 out=$4
  shift 4
  mkdir -p "$out"
  python3 bench/multi_gpu_resume.py --ranks "$ranks" --preset "$preset" --deepspeed "$ds" --root "$out/resume" \
      "$@" > "$out/resume.json"
  cat "$out/resume.json"
}

measure_all() {  # PRESET DEEPSPEED OUT EXTRA...: 1 rank, then RANKS ranks
  local preset=$1 ds=$2 out=$3
  shift 3
  mkdir -p "$out"
  measure 1 "$preset" "$ds" "$out/one_rank" "$@"
  measure "$RANKS" "$preset" "$ds" "$out/ranks_$RANKS" "$@"
}

case "$MODE" in
  prepare) prepare ;;
  run)  # ~2 x 3 minutes: throughput and memory, 1 vs N GPUs, ZeRO-2; 640 CLoT-like records, batch 16 per GPU:
        # 40 iterations an epoch on 1 GPU, 20 on 2; both capped at 20 (3 of them warm-up)
    install_carry
    nvidia-smi --query-gpu=name,memory.total --format=csv
    measure_all internvl2-2b deepspeed_zero2 "${3:-${OUT:-work_dirs/multi_gpu}}" --clot-like-records 640 \
        --epochs 1 train_cfg.iter_cap=20 ;;
  resume)  # ~2 x 3 runs: plain DDP and ZeRO-2, LoRA dropout on (0.0 = exact)
    install_carry
    out="${3:-${OUT:-work_dirs/multi_gpu}}"
    mkdir -p "$out"
    resume_check "$RANKS" internvl2-2b "" "$out/ddp"
    resume_check "$RANKS" internvl2-2b deepspeed_zero2 "$out/zero2" ;;
  smoke)  # plain DDP: ZeRO-2's all_gather_into_tensor fails under gloo (tests/e2e/test_deepspeed_cpu.py)
    export OMP_NUM_THREADS=1
    out="${3:-work_dirs/multi_gpu_smoke}"
    RANKS=2 measure_all tiny "" "$out" --epochs 2 train_cfg.iter_cap=6  # 2 ranks x 4: 5 iterations an epoch
    resume_check 2 tiny "" "$out" ;;
  *) sed -n '2,13p' "$0"; exit 2 ;;
esac
