"""Compare openclap-mini runs on their held-out-source validation sets only, never on the test splits.

Reads what scripts/train_openclap_mini.sh leaves in a run folder: ``val_templates.json`` (each set's
candidate prompts, scored on validation), ``templates.json`` (the prompts it chose) and ``eval/val-*.json``.
Runs named ``NAME-seedN`` are one recipe, ``NAME``: its row is the mean over its seeds. The choice between
recipes is the mean of the five real sets (docs/openclap-mini.md); the synthetic voices and the timbre
variants are shown beside it.

    python scripts/mini_validation.py runs/robust-v10a runs/robust-v10a-seed1 runs/robust-v12 ...
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

# (column, header): the five real validation sets that choose between recipes, in the model card's order
REAL_SETS = [
    ("takes", "takes"),  # the training speakers' held-out takes 5-9 (only recipes that hold them out)
    ("speaker", "speaker"),  # the held-out FSDD speaker's 450 train-split clips
    ("esc10", "ESC-10"),  # the recipe's held-out ESC-10 clips
    ("label", "label"),  # the held-out instrument notes, by instrument
    ("family", "family"),  # the same notes, by family
]
# held-out sources that are not real recordings: shown, not part of the choice
SYNTHETIC_SETS = [("voices", "voices"), ("timbre_label", "timbre-l"), ("timbre_family", "timbre-f")]
# val_templates.json / templates.json key for each prompt-chosen set
PROMPT_SETS = {"speaker": "fsdd", "esc10": "esc10", "label": "instruments", "family": "family"}
# eval/ file for each set evaluated with the chosen prompt
EVAL_FILES = {
    "takes": "val-fsdd-takes.json",
    "voices": "val-synthetic-voices.json",
    "timbre_label": "val-timbre-label.json",
    "timbre_family": "val-timbre-family.json",
}


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run scripts/train_openclap_mini.sh on this run first")
    return json.loads(path.read_text())


def run_scores(run: Path) -> dict[str, float | None]:
    """One run's validation accuracies in percent (None: a set this run's recipe has no data for)."""
    table = _read_json(run / "val_templates.json")
    chosen = _read_json(run / "templates.json")
    scores: dict[str, float | None] = {}
    for column, key in PROMPT_SETS.items():
        if key not in table or chosen.get(key) not in table[key]:
            raise SystemExit(f"{run}: val_templates.json has no score for the chosen {key!r} prompt")
        scores[column] = 100 * table[key][chosen[key]]
    for column, name in EVAL_FILES.items():
        path = run / "eval" / name
        scores[column] = (
            100 * _read_json(path)["results"][0]["metrics"]["accuracy"] if path.is_file() else None
        )
    return scores


def with_means(scores: dict[str, float | None]) -> dict[str, float | None]:
    """Add the mean of the five real sets (None without the takes) and of the four all recipes share."""
    four = [scores[c] for c in ("speaker", "esc10", "label", "family")]
    five = [scores["takes"], *four]
    return {
        **scores,
        "mean5": None if None in five else sum(five) / 5,
        "mean4": None if None in four else sum(four) / 4,
    }


def recipe_name(run: Path) -> str:
    """The recipe a run belongs to: its folder name without a trailing ``-seedN``."""
    return re.sub(r"-seed\d+$", "", run.name)


def summarise(runs: list[Path]) -> list[tuple[str, dict[str, float | None]]]:
    """Rows for each run, then a mean row for each recipe with more than one run."""
    rows = [(run.name, with_means(run_scores(run))) for run in runs]
    groups: dict[str, list[dict[str, float | None]]] = {}
    for run, (_, scores) in zip(runs, rows):
        groups.setdefault(recipe_name(run), []).append(scores)
    for name, members in groups.items():
        if len(members) > 1:
            mean = {
                column: None
                if any(m[column] is None for m in members)
                else sum(m[column] for m in members) / len(members)
                for column in members[0]
            }
            rows.append((f"{name} (mean of {len(members)} seeds)", mean))
    return rows


def format_table(rows: list[tuple[str, dict[str, float | None]]]) -> str:
    """A fixed-width table: one line per run or recipe mean, accuracies in percent with one decimal."""
    columns = [*REAL_SETS, ("mean5", "mean of 5"), ("mean4", "mean of 4"), *SYNTHETIC_SETS]
    width = max(len("run"), *(len(name) for name, _ in rows))
    lines = [f"{'run':<{width}}  " + "  ".join(f"{h:>9}" for _, h in columns)]
    for name, scores in rows:
        cells = ["–" if scores[c] is None else f"{scores[c]:.1f}" for c, _ in columns]
        lines.append(f"{name:<{width}}  " + "  ".join(f"{c:>9}" for c in cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the validation table of the given run folders."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders evaluated by train_openclap_mini.sh")
    args = parser.parse_args(argv)
    print(format_table(summarise(args.runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
