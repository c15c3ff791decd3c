"""A resumed `openclap embed` reports the failed files its output holds and exits 1, as the first run does."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

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


def test_resume_re_embeds_a_failed_file_once_it_is_fixed(tmp_path: Path, capsys) -> None:
    """A file that failed is tried again when it changes (new size and mtime): the resumed run embeds it, its
    line leaves errors.csv, the embeddings equal a fresh run's, and the exit code is back to 0."""
    good = str(DEMO / "4-183992-A-dog.flac")
    fixed = tmp_path / "rain.flac"
    rain = (DEMO / "4-160999-A-rain.flac").read_bytes()
    fixed.write_bytes(rain[:300])  # cut short: fails
    out = tmp_path / "out"
    args = ["embed", good, str(fixed), "--out", str(out), "--workers", "0", "--model", "tiny"]
    assert cli_main(args) == 1
    capsys.readouterr()

    fixed.write_bytes(rain)  # the whole file: another size, a later mtime
    assert cli_main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["skipped"], summary["embedded"], summary["failed"], summary["failed_earlier"]) == (
        1,
        1,
        0,
        0,
    )
    with open(out / "errors.csv", newline="") as f:
        assert list(csv.DictReader(f)) == []
    from openclap.bulk import ChunkStore

    table = ChunkStore(out).read_table()
    assert sorted(Path(r.path).name for r in table.rows) == ["4-183992-A-dog.flac", "rain.flac"]
    fresh = tmp_path / "fresh"
    assert (
        cli_main(["embed", good, str(fixed), "--out", str(fresh), "--workers", "0", "--model", "tiny"]) == 0
    )
    capsys.readouterr()
    again = ChunkStore(fresh).read_table()
    by_name = {Path(r.path).name: v for r, v in zip(again.rows, again.vectors)}
    for r, v in zip(table.rows, table.vectors):
        np.testing.assert_allclose(v, by_name[Path(r.path).name], rtol=0, atol=1e-5)  # batch mates differ


def test_files_that_are_not_audio_are_counted_apart_from_failures(tmp_path: Path) -> None:
    """Two Markdown files among the inputs: "not audio" 2, failed 0 (a corrupt audio file counts as failed)."""
    from openclap.bulk import EmbedOptions, run_embed_job

    notes = [tmp_path / "notes.md", tmp_path / "readme.md"]
    for n in notes:
        n.write_text("plain text, no audio here\n" * 20)
    report = run_embed_job(
        openclap.load("tiny"),
        [str(DEMO / "7_theo_0.flac"), *map(str, notes)],
        tmp_path / "out",
        EmbedOptions(num_workers=0),
    )
    assert (report.embedded, report.failed, report.not_audio) == (1, 0, 2), report.errors
    assert report.summary() == "embedded 1, failed 0, not audio 2"
