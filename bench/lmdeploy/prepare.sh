#!/usr/bin/env bash
# Prepare the git-ignored carry of bench/lmdeploy/run.sh, on the CPU machine (a few minutes):
#   .official/remote_code   the official InternVL model code (tools/official_remote_code.py GIT_DIR)
#   .gpu_lmdeploy/          a tiny 3-iteration QLoRA run converted by xtuner_ext from a base folder that
#                           carries that remote code, plus one held-out image
# Usage: bash bench/lmdeploy/prepare.sh OPENGVLAB_INTERNVL_GIT_DIR
set -euo pipefail
ROOT="$(git rev-parse --show-toplevel)"; WORK="$(mktemp -d)"; DEST="$ROOT/.gpu_lmdeploy"
python "$ROOT/tools/official_remote_code.py" "$1" --out "$ROOT/.official/remote_code"
python - "$WORK" "$ROOT" <<'PY'
import shutil, sys
from pathlib import Path
from xtuner_ext.data.sample import make_clot_sample
from xtuner_ext.models.internvl2.tiny import make_tiny_model
work, root = Path(sys.argv[1]), Path(sys.argv[2])
base = make_tiny_model(work / 'internvl2_tiny', seed=0)
for code in (root / '.official' / 'remote_code').glob('*.py'):
    shutil.copy(code, base / code.name)
make_clot_sample(work / 'CLoT_sample', seed=0)
PY
export XTUNER_EXT_MODEL_PATH="$WORK/internvl2_tiny" XTUNER_EXT_DATA_ROOT="$WORK/CLoT_sample"
CONFIG="$ROOT/configs/internvl/internvl2_tiny_qlora.py"
xtuner train "$CONFIG" --work-dir "$WORK/run" --cfg-options train_cfg.iter_cap=3
rm -rf "$DEST" && mkdir -p "$DEST"
xtuner-ext convert-official "$CONFIG" "$WORK/run/iter_3.pth" "$DEST/tiny_converted" --check-samples 2
IMAGE=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))[0]['image'])" "$WORK/CLoT_sample/heldout.json")
cp "$WORK/CLoT_sample/$IMAGE" "$DEST/"
rm -rf "$WORK"; du -sh "$DEST"
