"""A resumed `openclap embed` reports the failed files its output holds and exits 1, as the first run does."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import openclap
from openclap.cli import main as cli_main

DEMO = Path(openclap.__file__).parent / "assets" / "demo"


def test_resumed_embed_exits_1_while_output_holds_failures(tmp_path: Path, capsys) -> None:
    good = [str(DEMO / "4-183992-A-dog.flac"), str(DEMO / "7_theo_0.flac")]
    corrupt = tmp_path / "corrupt.flac"
    corrupt.write_bytes((DEMO / "4-160999-A-rain.flac").read_bytes()[:300])  # a real FLAC cut short
    out = tmp_path / "out"
    args = ["embed", *good, str(corrupt), "--out", str(out), "--workers", "0", "--model", "tiny"]

    assert cli_main(args) == 1
    first = capsys.readouterr()
    assert "corrupt.flac" in first.err and json.loads(first.out)["failed"] == 1

    assert cli_main(args) == 1  # resumed: nothing new to embed, but the output still holds the failure
    again = capsys.readouterr()
    summary = json.loads(again.out)
    assert (summary["skipped"], summary["embedded"], summary["failed"], summary["failed_earlier"]) == (
        3,
        0,
        0,
        1,
    )
    assert "earlier run" in again.err and "corrupt.flac" in again.err
    with open(out / "errors.csv", newline="") as f:
        assert [Path(r["path"]).name for r in csv.DictReader(f)] == ["corrupt.flac"]

    # Once the failed file is left out, the resumed output is clean for these inputs: exit 0.
    assert cli_main(["embed", *good, "--out", str(out), "--workers", "0", "--model", "tiny"]) == 0
