#!/usr/bin/env bash
# One GPU command: LMDeploy 0.18 (PyTorch engine) against xtuner_ext's native chat on converted folders.
# Carry: .carry (project wheels + slim bitsandbytes), .carry_lmdeploy/{whl,lmdeploy_slim}
# (../shared/device/prepare_*carry.sh), .official (tools/official_remote_code.py) and .gpu_lmdeploy
# (the tiny converted folder + one held-out image: bench/lmdeploy/prepare.sh). Results go to $OUT.
set -uo pipefail
export PYTHONUNBUFFERED=1
ROOT="$PWD"; HERE="$ROOT/bench/lmdeploy"; OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .carry/whl/*.whl
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/lmd .carry_lmdeploy/whl/*.whl
PROJECT="/tmp/site:$ROOT/.carry/bnb:$ROOT"
LMD="/tmp/lmd:$ROOT/.carry_lmdeploy/lmdeploy_slim"
TINY="$ROOT/.gpu_lmdeploy/tiny_converted"; IMAGE=$(ls "$ROOT"/.gpu_lmdeploy/*.jpg | head -1)
Q='请你根据这张图片，讲一个脑洞大开的梗'
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$OUT/gpu.txt"
PYTHONPATH=$PROJECT timeout 50 python3 "$HERE/check.py" native "$TINY" "$IMAGE" "$Q" "$OUT/tiny_native.json" 2> "$OUT/tiny_native.err"
PYTHONPATH=$LMD timeout 120 python3 "$HERE/check.py" lmdeploy "$TINY" "$IMAGE" "$Q" "$OUT/tiny_lmdeploy.json" 2> "$OUT/tiny_lmdeploy.err"
PYTHONPATH=$PROJECT timeout 260 python3 "$HERE/check.py" full-size /tmp/full > "$OUT/full_size.log" 2>&1
cp /tmp/full/full_size.json /tmp/full/converted/conversion_check.json /tmp/full/converted/config.json "$OUT/" 2>/dev/null
IMAGE2=$(ls /tmp/full/CLoT_sample/ex_images/*.jpg 2>/dev/null | head -1)
if [ -d /tmp/full/converted ]; then
  PYTHONPATH=$PROJECT timeout 45 python3 "$HERE/check.py" native /tmp/full/converted "$IMAGE2" "$Q" "$OUT/full_native.json" 2> "$OUT/full_native.err"
  PYTHONPATH=$LMD timeout 110 python3 "$HERE/check.py" lmdeploy /tmp/full/converted "$IMAGE2" "$Q" "$OUT/full_lmdeploy.json" 2> "$OUT/full_lmdeploy.err"
fi
for f in "$OUT"/*.err; do tail -c 3000 "$f" > "$f.tail" && mv "$f.tail" "$f"; done
ls -la "$OUT"; cat "$OUT"/*.json | head -c 6000
