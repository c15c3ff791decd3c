#!/usr/bin/env bash
# Reproduce openclap-mini (configs/openclap-mini.yaml) on CPU, evaluate it on the test splits with
# `openclap eval`, and (with --install) copy it into the package's bundled model folder.
#   bash scripts/train_openclap_mini.sh [RUN_DIR] [--install]      (~40 min training + ~5 min evaluation)
# Needs ../shared/data (FSDD, ESC-10, instruments) and the venv with openclap installed (pip install -e .).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_DIR="${1:-runs/openclap-mini}"
INSTALL="${2:-}"
DATA=../shared/data
if [ -z "${SKIP_TRAIN:-}" ]; then  # SKIP_TRAIN=1: only evaluate an existing run
  python scripts/train_openclap_mini.py configs/openclap-mini.yaml --run-dir "$RUN_DIR"
fi
MODEL="$RUN_DIR/final"
cp "$RUN_DIR/templates.json" "$MODEL/templates.json"
tpl() { python -c "import json,sys; print(json.load(open('$RUN_DIR/templates.json'))[sys.argv[1]])" "$1"; }
mkdir -p "$RUN_DIR/eval"
ev() { openclap eval "$@" --model "$MODEL" --cache-dir "$RUN_DIR/eval/cache" --no-progress --json; }
# the held-out speaker: its test clips and its (never trained on) train clips, as one manifest each
python - "$DATA/fsdd/manifest.csv" "$RUN_DIR/eval" <<'PY'
import csv, sys
from pathlib import Path
src, out = Path(sys.argv[1]).resolve(), Path(sys.argv[2])
rows = [r for r in csv.DictReader(open(src, newline="")) if r["speaker"] == "yweweler"]
for r in rows:
    r["path"] = str(src.parent / r["path"])
with open(out / "fsdd-yweweler.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
PY
ev zeroshot --manifest "$DATA/fsdd/manifest.csv" --split test --template "$(tpl fsdd)" > "$RUN_DIR/eval/fsdd.json"
ev zeroshot --manifest "$RUN_DIR/eval/fsdd-yweweler.csv" --split test --template "$(tpl fsdd)" > "$RUN_DIR/eval/fsdd-yweweler-test.json"
ev zeroshot --manifest "$RUN_DIR/eval/fsdd-yweweler.csv" --split train --template "$(tpl fsdd)" > "$RUN_DIR/eval/fsdd-yweweler-train.json"
ev zeroshot --manifest "$DATA/esc10/manifest.csv" --split test --template "$(tpl esc10)" > "$RUN_DIR/eval/esc10.json"
ev zeroshot --manifest "$DATA/instruments/manifest.csv" --split test --template "$(tpl instruments)" > "$RUN_DIR/eval/instruments.json"
ev zeroshot --manifest "$DATA/instruments/manifest.csv" --split test --label-column family --template "$(tpl family)" > "$RUN_DIR/eval/family.json"
for set in fsdd esc10 instruments; do
  ev retrieval --manifest "$DATA/$set/manifest.csv" --split test > "$RUN_DIR/eval/retrieval-$set.json"
done
if [ "$INSTALL" = "--install" ]; then
  DEST=src/openclap/assets/models/openclap-mini
  rm -rf "$DEST" && mkdir -p "$DEST" && cp -r "$MODEL"/. "$DEST"/
  echo "installed $MODEL -> $DEST"
fi
echo "metrics in $RUN_DIR/eval/"
