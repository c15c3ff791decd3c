"""docs/openclap-mini.md's test-split table is what `openclap eval zeroshot` gives the installed openclap-mini.

Slow: it evaluates the full test splits of ../shared/data (FSDD, ESC-10, instruments; not committed, so the
test skips where that folder is absent), with the template each row of the card names. A new set of
weights installed without its model card, or a card edited by hand, fails here."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CARD = REPO / "docs" / "openclap-mini.md"
DATA = REPO.parent / "shared" / "data"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (DATA / "fsdd" / "manifest.csv").is_file(), reason=f"{DATA} (the full test splits) is absent"
    ),
]

# the card's row name -> (manifest, split, label column, rows kept)
ROWS = {
    "FSDD digits (test, 4 speakers)": ("fsdd", "test", "label", None),
    "FSDD held-out speaker yweweler, test clips": ("fsdd", "test", "label", "yweweler"),
    "FSDD held-out speaker yweweler, his 450 train-split clips": ("fsdd", "train", "label", "yweweler"),
    "ESC-10 (test = fold 4)": ("esc10", "test", "label", None),
    "instruments: instrument label (test)": ("instruments", "test", "label", None),
    "instruments: family (test)": ("instruments", "test", "family", None),
}


def card_rows() -> dict[str, tuple[int, str, float]]:
    """The card's zero-shot test table: row name -> (clips, template, accuracy in percent)."""
    text = CARD.read_text(encoding="utf-8")
    table = text.split("## Measured zero-shot accuracy and retrieval (test splits)")[1].split("\n\n")[2]
    rows = {}
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        name, clips, template, accuracy = cells[0], int(cells[1]), cells[4].strip("`"), cells[5]
        rows[name] = (clips, template, float(re.fullmatch(r"\*\*([\d.]+) %\*\*", accuracy).group(1)))
    return rows


def test_card_lists_every_evaluated_row():
    assert set(card_rows()) == set(ROWS)


@pytest.mark.parametrize("row", list(ROWS))
def test_card_test_accuracy_is_what_eval_zeroshot_gives(row, tmp_path):
    clips, template, expected = card_rows()[row]
    dataset, split, label_column, speaker = ROWS[row]
    manifest = DATA / dataset / "manifest.csv"
    if speaker is not None:  # one speaker's rows, as scripts/train_openclap_mini.sh writes them
        with open(manifest, newline="", encoding="utf-8") as f:
            kept = [r for r in csv.DictReader(f) if r["speaker"] == speaker]
        for r in kept:
            r["path"] = str(DATA / dataset / r["path"])
        manifest = tmp_path / f"{dataset}-{speaker}.csv"
        with open(manifest, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(kept[0]))
            writer.writeheader()
            writer.writerows(kept)
    argv = ["eval", "zeroshot", "--manifest", str(manifest), "--split", split, "--label-column", label_column]
    argv += ["--template", template, "--model", "openclap-mini", "--no-cache", "--no-progress", "--json"]
    out = subprocess.run(
        [sys.executable, "-m", "openclap", *argv], check=True, capture_output=True, text=True
    )
    result = json.loads(out.stdout)["results"][0]
    assert result["num_evaluated"] == clips
    assert round(100 * result["metrics"]["accuracy"], 1) == expected
