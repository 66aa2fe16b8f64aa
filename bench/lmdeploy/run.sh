#!/usr/bin/env bash
# One GPU command: LMDeploy 0.18 (PyTorch engine) against xtuner_ext's native chat on converted folders.
# Carry: .carry (project wheels + slim bitsandbytes), .carry_lmdeploy/{whl,lmdeploy_slim}
# (../shared/device/prepare_*carry.sh), .official (tools/official_remote_code.py) and .gpu_lmdeploy
# (the demo's converted fine-tune + images: bench/lmdeploy/prepare.sh). Usage: bash run.sh tiny|full|all
# Results: $OUT/results.txt (every step's JSON) and $OUT/errors.txt (stderr tails), refreshed after
# each step, so a step that runs out of time still leaves the others' results.
set -uo pipefail
export PYTHONUNBUFFERED=1
ROOT="$PWD"; HERE="$ROOT/bench/lmdeploy"; OUT="${OUT:-/tmp/out}"; RES=/tmp/res; mkdir -p "$OUT" "$RES"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .carry/whl/*.whl
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/lmd .carry_lmdeploy/whl/*.whl
PROJECT="/tmp/site:$ROOT/.carry/bnb:$ROOT"
LMD="/tmp/lmd:$ROOT/.carry_lmdeploy/lmdeploy_slim"
TINY="$ROOT/.gpu_lmdeploy/tiny_converted"; IMAGE=$(ls "$ROOT"/.gpu_lmdeploy/train_*.jpg | head -1)
Q='请你根据这张图片，讲一个脑洞大开的梗'
collect() {
  for f in "$RES"/*.json; do echo "== $(basename "$f")"; cat "$f"; done > "$OUT/results.txt" 2>/dev/null
  for f in "$RES"/*.err; do echo "== $(basename "$f")"; tail -c 2500 "$f"; done > "$OUT/errors.txt" 2>/dev/null
}
step() {  # step NAME ENV SECONDS ARGS...
  local name=$1 env=$2 secs=$3; shift 3
  local t0=$(date +%s)
  PYTHONPATH=$env timeout "$secs" python3 "$HERE/check.py" "$@" > "$RES/$name.err" 2>&1
  echo "$name: exit $? after $(( $(date +%s) - t0 )) s" | tee -a "$RES/steps.err"; collect
}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$OUT/gpu.txt"
PHASE=${1:-all}  # tiny | full | all (one GPU command each fits in the 10-minute limit)
if [ "$PHASE" != full ]; then  # the demo's fine-tune, asked about a training image (its joke was learned)
  step 1_tiny_lmdeploy "$LMD" 120 lmdeploy "$TINY" "$IMAGE" "$Q" "$RES/1_tiny_lmdeploy.json"
  step 2_tiny_agree "$PROJECT" 60 agree "$TINY" "$IMAGE" "$Q" "$RES/1_tiny_lmdeploy.json" "$RES/2_tiny_agree.json"
  step 3_tiny_native "$PROJECT" 50 native "$TINY" "$IMAGE" "$Q" "$RES/3_tiny_native.json"
fi
if [ "$PHASE" != tiny ]; then  # full-size InternVL2-2B architecture, random weights, converted by us
  step 4_full_size "$PROJECT" 300 full-size /tmp/full
  cp /tmp/full/full_size.json "$RES/4_full_size.json" 2>/dev/null
  cp /tmp/full/converted/conversion_check.json "$OUT/full_conversion_check.json" 2>/dev/null; collect
  IMAGE2=$(ls /tmp/full/CLoT_sample/ex_images/*.jpg 2>/dev/null | head -1)
  if [ -d /tmp/full/converted ]; then
    step 5_full_lmdeploy "$LMD" 150 lmdeploy /tmp/full/converted "$IMAGE2" "$Q" "$RES/5_full_lmdeploy.json"
    step 6_full_agree "$PROJECT" 90 agree /tmp/full/converted "$IMAGE2" "$Q" "$RES/5_full_lmdeploy.json" \
        "$RES/6_full_agree.json"
  fi
fi
cat "$OUT/results.txt"
