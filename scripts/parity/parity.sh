#!/usr/bin/env bash
# Numerical parity of openclap with the reference implementations, on identical random weights.
#   bash scripts/parity/parity.sh [FAMILY ...]    FAMILY: msclap-2023 msclap-2022 laion laion-fusion
# Builds the side venv if missing (scripts/parity/setup_sidevenv.sh), then for each family:
#   1. openclap venv: real clips from tests/data at the family's rate and exact clip length, texts,
#      tokenizer files;
#   2. side venv: a random model built with msclap's / laion_clap's own classes, saved in the official
#      checkpoint format, and its reference embeddings;
#   3. openclap venv: openclap.load(preset, checkpoint=...) on that file; prints min cosine / max abs diff.
# Environment: OPENCLAP_PY (default .venv/bin/python), SIDE_VENV (default .sidevenv), PARITY_WORK (work dir).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
PY="${OPENCLAP_PY:-$REPO/.venv/bin/python}"
SIDE="${SIDE_VENV:-$REPO/.sidevenv}"
WORK="${PARITY_WORK:-$(mktemp -d -t openclap-parity-XXXX)}"
FAMILIES=("$@")
[ ${#FAMILIES[@]} -eq 0 ] && FAMILIES=(msclap-2023 msclap-2022 laion laion-fusion)
[ -x "$SIDE/bin/python" ] || bash "$REPO/scripts/parity/setup_sidevenv.sh" "$SIDE"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
status=0
for fam in "${FAMILIES[@]}"; do
  dir="$WORK/$fam"
  "$PY" "$REPO/scripts/parity/openclap_side.py" prepare "$fam" --out "$dir"
  (cd /tmp && "$SIDE/bin/python" "$REPO/scripts/parity/reference_models.py" "$fam" \
      --clips "$dir/clips.npz" --texts "$dir/texts.json" --tokenizer "$dir/tokenizer" --out "$dir")
  "$PY" "$REPO/scripts/parity/openclap_side.py" check "$fam" --out "$dir" || status=1
  if [ -n "${PARITY_FIXTURES:-}" ]; then  # make_fixtures.sh: write the committed fixture
    "$PY" "$REPO/scripts/parity/openclap_side.py" fixture "$fam" --out "$dir" --dest "$PARITY_FIXTURES" || status=1
  fi
  rm -f "$dir"/*.pth "$dir"/*.pt  # checkpoints are large; results stay in $dir/result.json
done
echo "results in $WORK/*/result.json"
exit $status
