#!/usr/bin/env bash
# Reproduce openclap-mini with openclap's own trainer (`openclap train configs/openclap-mini.yaml`): make the
# generated data the recipe reads, train, pick its zero-shot prompt templates on the validation clips,
# evaluate it on the test splits with `openclap eval`, and (with --install) copy it into the package's
# bundled model folder.
#   bash scripts/train_openclap_mini.sh [RUN_DIR] [--install]     (~35-60 min training + ~5 min evaluation)
# Needs ../shared/data (FSDD, ESC-10, instruments), espeak-ng (apt-get install espeak-ng) and the venv with
# openclap installed (pip install -e .).
# Generated data (HELDOUT=folder, default runs/data; made once when missing, the same bytes every time):
# the espeak-ng voices of make_synthetic_digits.py (split train: training voices; split val: held-out
# voices) and the timbre variants of make_timbre_variants.py (held-out-source validation, issue 17).
# SKIP_TRAIN=1: only choose templates and evaluate an existing run. VALIDATION_ONLY=1: stop after the
# validation table (choose between runs with scripts/mini_validation.py before any test split is evaluated;
# a later SKIP_TRAIN=1 run adds the test lines). RECIPE=...: another recipe (default
# configs/openclap-mini.yaml).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_DIR="${1:-runs/openclap-mini}"
INSTALL="${2:-}"
RECIPE="${RECIPE:-configs/openclap-mini.yaml}"
HELDOUT="${HELDOUT:-runs/data}"
DATA=../shared/data
# ---- generated data (not committed): skipped where its manifest exists
if [ ! -f "$HELDOUT/synthetic-digits/manifest.csv" ]; then
  python scripts/make_synthetic_digits.py "$HELDOUT/synthetic-digits"
fi
if [ ! -f "$HELDOUT/timbre-val/manifest.csv" ]; then
  python scripts/make_timbre_variants.py "$HELDOUT/timbre-val" --recipe "$RECIPE"
fi
if [ -z "${SKIP_TRAIN:-}" ]; then
  openclap train "$RECIPE" --run-dir "$RUN_DIR"
fi
MODEL="$RUN_DIR/final"
mkdir -p "$RUN_DIR/eval"
# --progress: the evaluations take minutes; the bars go to stderr, the JSON to stdout
ev() { openclap eval "$@" --model "$MODEL" --cache-dir "$RUN_DIR/eval/cache" --progress --json; }

# ---- validation manifests (never the test splits): the recipe's held-out ESC-10 and instrument clips, and
# every train-split clip of the held-out FSDD speaker yweweler (450; the recipe validates on 100 of them)
python - "$RECIPE" "$DATA/fsdd/manifest.csv" "$RUN_DIR/eval" <<'PY'
import csv, sys
from pathlib import Path
from openclap_train.config import load_config
from openclap_train.data import read_manifest

recipe, fsdd, out = load_config(sys.argv[1]), Path(sys.argv[2]).resolve(), Path(sys.argv[3])

def write(name, manifest, keep):
    manifest = Path(manifest).resolve()
    rows = [r for r in csv.DictReader(open(manifest, newline="")) if keep(r, str(manifest.parent / r["path"]))]
    for r in rows:
        r["path"] = str(manifest.parent / r["path"])
    with open(out / f"{name}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)

for spec in recipe.val_manifest:
    if spec.display_name.startswith(("esc10", "instruments", "fsdd-val-takes")):
        paths = {str(Path(s.path).resolve()) for s in read_manifest(spec)}
        write(spec.display_name, spec.path, lambda r, p: p in paths)
# the held-out speaker: all his clips (the split column tells train-split from test-split ones)
write("fsdd-yweweler", fsdd, lambda r, p: r["speaker"] == "yweweler")
PY

# ---- templates: the best candidate per set on validation -> templates.json (beside the weights)
python - "$RUN_DIR" "$MODEL" <<'PY'
import json, subprocess, sys
from pathlib import Path

run, model = Path(sys.argv[1]), sys.argv[2]
ev = run / "eval"
candidates = {
    "fsdd": ["{}", "the sound of {}", "a man says the number {}", "the spoken digit {}", "a male voice saying {}"],
    "esc10": ["{}", "the sound of {}", "this is the sound of {}", "a {}", "the sound of a {}"],
    "instruments": ["{}", "the sound of {}", "the sound of a {} note", "a single note on the {}"],
    "family": ["{}", "a note played on a {} instrument", "the sound of a {} instrument", "a {} instrument"],
}
sets = {"fsdd": (ev / "fsdd-yweweler.csv", "train", []), "esc10": (ev / "esc10-val.csv", None, []),
        "instruments": (ev / "instruments-val.csv", None, []),
        "family": (ev / "instruments-val.csv", None, ["--label-column", "family"])}
chosen, table = {}, {}
for name, (manifest, split, extra) in sets.items():
    table[name] = {}
    for template in candidates[name]:
        cmd = ["openclap", "eval", "zeroshot", "--manifest", str(manifest), "--template", template, "--model", model,
               "--cache-dir", str(ev / "cache"), "--no-progress", "--json", *extra]
        if split:
            cmd += ["--split", split]
        out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        table[name][template] = out["results"][0]["metrics"]["accuracy"]
    chosen[name] = max(candidates[name], key=lambda t: table[name][t])  # ties: the earlier candidate
    print(f"{name}: {chosen[name]!r} ({100 * table[name][chosen[name]]:.1f} % on validation)")
(run / "val_templates.json").write_text(json.dumps(table, indent=2) + "\n")
# "default": the prompt for any other label set (`openclap classify`): the one most sets chose
picks = list(chosen.values())
chosen = {"default": max(picks, key=picks.count), **chosen}
(run / "templates.json").write_text(json.dumps(chosen, indent=2) + "\n")
PY
cp "$RUN_DIR/templates.json" "$MODEL/templates.json"
tpl() { python -c "import json,sys; print(json.load(open('$RUN_DIR/templates.json'))[sys.argv[1]])" "$1"; }

# ---- held-out-source validation (voices and timbres in no training data), with the chosen templates
ev zeroshot --manifest "$HELDOUT/synthetic-digits/manifest.csv" --split val --template "$(tpl fsdd)" > "$RUN_DIR/eval/val-synthetic-voices.json"
ev zeroshot --manifest "$HELDOUT/timbre-val/manifest.csv" --split val --template "$(tpl instruments)" > "$RUN_DIR/eval/val-timbre-label.json"
ev zeroshot --manifest "$HELDOUT/timbre-val/manifest.csv" --split val --label-column family --template "$(tpl family)" > "$RUN_DIR/eval/val-timbre-family.json"

if [ -f "$RUN_DIR/eval/fsdd-val-takes.csv" ]; then  # the seen speakers' held-out takes (recipes that hold them out)
  ev zeroshot --manifest "$RUN_DIR/eval/fsdd-val-takes.csv" --split train --template "$(tpl fsdd)" > "$RUN_DIR/eval/val-fsdd-takes.json"
fi

echo "---- validation (held-out sources; the choice between runs: python scripts/mini_validation.py RUN...)"
python scripts/mini_validation.py "$RUN_DIR"
if [ -n "${VALIDATION_ONLY:-}" ]; then
  echo "VALIDATION_ONLY: no test split evaluated"
  exit 0
fi

# ---- test splits (first read here)
ev zeroshot --manifest "$DATA/fsdd/manifest.csv" --split test --template "$(tpl fsdd)" > "$RUN_DIR/eval/fsdd.json"
ev zeroshot --manifest "$RUN_DIR/eval/fsdd-yweweler.csv" --split test --template "$(tpl fsdd)" > "$RUN_DIR/eval/fsdd-yweweler-test.json"
ev zeroshot --manifest "$DATA/esc10/manifest.csv" --split test --template "$(tpl esc10)" > "$RUN_DIR/eval/esc10.json"
ev zeroshot --manifest "$DATA/instruments/manifest.csv" --split test --template "$(tpl instruments)" > "$RUN_DIR/eval/instruments.json"
ev zeroshot --manifest "$DATA/instruments/manifest.csv" --split test --label-column family --template "$(tpl family)" > "$RUN_DIR/eval/family.json"
for set in fsdd esc10 instruments; do
  ev retrieval --manifest "$DATA/$set/manifest.csv" --split test > "$RUN_DIR/eval/retrieval-$set.json"
done
echo "---- test splits"
python - "$RUN_DIR/eval" <<'PY'
import json, sys
from pathlib import Path
for f in sorted(p for p in Path(sys.argv[1]).glob("*.json") if not p.name.startswith("val-")):
    m = json.loads(f.read_text())["results"][0]["metrics"]
    if "accuracy" in m:
        print(f"{f.stem:22s} zero-shot accuracy {100 * m['accuracy']:5.1f} %")
    else:
        print(f"{f.stem:22s} t2a R@1 {100 * m['text_to_audio']['R@1']:5.1f} %  a2t R@1 {100 * m['audio_to_text']['R@1']:5.1f} %")
PY

if [ "$INSTALL" = "--install" ]; then
  DEST=src/openclap/assets/models/openclap-mini
  rm -rf "$DEST" && mkdir -p "$DEST" && cp -r "$MODEL"/. "$DEST"/
  echo "installed $MODEL -> $DEST"
fi
echo "metrics in $RUN_DIR/eval/"
