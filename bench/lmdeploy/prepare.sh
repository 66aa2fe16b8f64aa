#!/usr/bin/env bash
# Prepare the git-ignored carry of bench/lmdeploy/run.sh, on the CPU machine (about a minute):
#   .official/remote_code   the official InternVL model code (tools/official_remote_code.py GIT_DIR)
#   .gpu_lmdeploy/          the `make demo` fine-tune (500 QLoRA iterations: it tells its training jokes
#                           with clear logit margins) converted by xtuner_ext from a copy of the demo's base
#                           folder that carries that remote code, as a real InternVL2-2B folder does; plus
#                           one training image (its joke was learned) and one held-out image
# Usage: make demo && bash bench/lmdeploy/prepare.sh OPENGVLAB_INTERNVL_GIT_DIR
set -euo pipefail
ROOT="$(git rev-parse --show-toplevel)"; WORK="$(mktemp -d)"; DEST="$ROOT/.gpu_lmdeploy"
RUN="$ROOT/work_dirs/demo"; CHECKPOINT=$(ls "$RUN"/iter_*.pth 2>/dev/null | sort -V | tail -1 || true)
[ -n "$CHECKPOINT" ] || { echo "no $RUN/iter_*.pth: run \`make demo\` first" >&2; exit 1; }
python "$ROOT/tools/official_remote_code.py" "$1" --out "$ROOT/.official/remote_code"
cp -r "$ROOT/embedded/internvl2_tiny" "$WORK/base" && cp "$ROOT"/.official/remote_code/*.py "$WORK/base/"
export XTUNER_EXT_MODEL_PATH="$WORK/base" XTUNER_EXT_DATA_ROOT="$ROOT/embedded/CLoT_sample"
rm -rf "$DEST" && mkdir -p "$DEST"
xtuner-ext convert-official "$ROOT/configs/internvl/internvl2_tiny_qlora.py" "$CHECKPOINT" "$DEST/tiny_converted" \
    --check-samples 2
for split in train heldout; do
  IMAGE=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))[0]['image'])" "$XTUNER_EXT_DATA_ROOT/$split.json")
  cp "$XTUNER_EXT_DATA_ROOT/$IMAGE" "$DEST/${split}_$(basename "$IMAGE")"
done
rm -rf "$WORK"; du -sh "$DEST"
