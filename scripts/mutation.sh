#!/usr/bin/env bash
# Mutation testing of one core module with the tests that guard it (mutmut 3.x).
#
#   scripts/mutation.sh MODULE [MUTANT_GLOB...]    e.g. scripts/mutation.sh loss
#   MODULE: loss windows frontend pooling metrics zero_shot bulk batching
#
# mutmut 3 reads [tool.mutmut] from pyproject.toml and mutates a copy of source_paths under ./mutants;
# to keep each run to one module and its tests it runs in a scratch copy of the repository (MUTATION_WORK,
# default /tmp/openclap-mutation-MODULE) whose [tool.mutmut] gains only_mutate and the test selection.
# MUTANT_GLOB (e.g. 'openclap.loss.x_ClipLoss*'; several may be given) limits the run to some mutants: a
# sample when the whole module is too slow, or the survivors of an earlier run. Prints the counts and the score killed / (killed + survived + timeout + suspicious).
# MUTATION_CHILDREN sets the parallel workers (default 2). Needs `pip install mutmut==3.8.1`.
set -euo pipefail
MODULE=${1:?usage: scripts/mutation.sh MODULE [MUTANT_GLOB...]}
GLOBS=("${@:2}")
case "$MODULE" in
  loss)      SRC=src/openclap/loss.py;            TESTS="tests/test_loss.py tests/test_loss_errors.py" ;;
  windows)   SRC=src/openclap/audio/windows.py;   TESTS="tests/test_windows.py tests/test_windows_values.py" ;;
  frontend)  SRC=src/openclap/audio/frontend.py;  TESTS="tests/test_frontend.py tests/test_int16_round_trip.py" ;;
  pooling)   SRC=src/openclap/text/encoders.py;   TESTS="tests/test_text.py" ;;
  metrics)   SRC=src/openclap/eval/metrics.py;    TESTS="tests/test_eval_metrics.py" ;;
  zero_shot) SRC=src/openclap/eval/zero_shot.py;  TESTS="tests/test_eval_zeroshot.py tests/test_zero_shot_alignment.py tests/test_eval_metrics.py" ;;
  bulk)      SRC=src/openclap/bulk/job.py;        TESTS="tests/test_bulk.py tests/test_embed_resume.py" ;;
  batching)  SRC=src/openclap/server/batching.py; TESTS="tests/test_server.py tests/test_server_isolation.py" ;;
  *) echo "unknown module $MODULE; one of: loss windows frontend pooling metrics zero_shot bulk batching" >&2; exit 2 ;;
esac
REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${MUTATION_WORK:-/tmp/openclap-mutation-$MODULE}
PY=${PYTHON:-python}
command -v mutmut >/dev/null || { echo "mutmut not found: pip install mutmut==3.8.1" >&2; exit 2; }

rm -rf "$WORK" && mkdir -p "$WORK"
cp -r "$REPO/src" "$REPO/tests" "$REPO/pyproject.toml" "$WORK/"
find "$WORK" -name __pycache__ -prune -exec rm -rf {} +
# The module's settings go right under the [tool.mutmut] header of the scratch copy's pyproject.toml.
"$PY" - "$WORK/pyproject.toml" "$SRC" $TESTS <<'PYEOF'
import json, sys
path, src, tests = sys.argv[1], sys.argv[2], sys.argv[3:]
text = open(path).read()
extra = f"only_mutate = {json.dumps([src])}\npytest_add_cli_args_test_selection = {json.dumps(tests)}\n"
assert "[tool.mutmut]\n" in text, "pyproject.toml has no [tool.mutmut] section"
open(path, "w").write(text.replace("[tool.mutmut]\n", "[tool.mutmut]\n" + extra, 1))
PYEOF
cd "$WORK"
echo "mutating $SRC with $TESTS in $WORK" >&2
mutmut run --max-children "${MUTATION_CHILDREN:-2}" "${GLOBS[@]}" >"$WORK/run.log" 2>&1 || {
  tail -30 "$WORK/run.log" >&2; exit 1; }
mutmut export-cicd-stats >/dev/null
"$PY" - "$MODULE" <<'PYEOF'
import json, sys
s = json.load(open("mutants/mutmut-cicd-stats.json"))
judged = s["killed"] + s["survived"] + s["timeout"] + s["suspicious"]
score = s["killed"] / judged if judged else float("nan")
print(f"{sys.argv[1]}: {s['total']} mutants, killed {s['killed']}, survived {s['survived']}, timeout {s['timeout']}, "
      f"suspicious {s['suspicious']}, no tests {s['no_tests']}, skipped {s['skipped']}; score {score:.1%}")
PYEOF
mutmut results 2>/dev/null | grep -E "survived|no tests" || true
