"""The `openclap` command as a user runs it: a real subprocess on real clips."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def openclap(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "openclap", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def clip_dir(shared_data: Path, tmp_path_factory) -> Path:
    """Four real ESC-10 clips and one corrupt file in a folder."""
    folder = tmp_path_factory.mktemp("clips")
    with open(shared_data / "esc10" / "manifest.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "test"][:4]
    for r in rows:
        shutil.copy(shared_data / "esc10" / r["path"], folder / Path(r["path"]).name)
    (folder / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    return folder


def test_help_lists_commands() -> None:
    out = openclap("--help")
    assert out.returncode == 0
    for command in ("models", "classify", "embed"):
        assert command in out.stdout


def test_models_lists_presets() -> None:
    out = openclap("models", "--json")
    assert out.returncode == 0
    names = {row["name"] for row in json.loads(out.stdout)}
    assert {"tiny", "msclap-2023", "msclap-2022"} <= names


def test_classify_folder_reports_bad_file_and_exits_1(clip_dir: Path) -> None:
    out = openclap(
        "classify", str(clip_dir), "--labels", "dog", "rain", "sea waves", "--json", "--top-k", "2"
    )
    assert out.returncode == 1, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    good = [r for r in lines if "labels" in r]
    bad = [r for r in lines if "error" in r]
    assert len(good) == 4 and len(bad) == 1
    assert all(len(r["labels"]) == 2 and r["labels"][0] in {"dog", "rain", "sea waves"} for r in good)
    assert "corrupt.wav" in bad[0]["path"] and "corrupt.wav" in out.stderr
    assert "classified 4, failed 1, not audio 0" in out.stderr


def test_classify_table_output_on_good_files(clip_dir: Path) -> None:
    files = sorted(str(p) for p in clip_dir.glob("*.flac"))
    out = openclap("classify", *files, "--labels", "dog", "rain")
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.strip().splitlines()) == len(files)


def test_usage_errors_exit_2(clip_dir: Path) -> None:
    assert openclap("classify", str(clip_dir)).returncode == 2  # --labels missing
    out = openclap("classify", str(clip_dir), "--labels", "dog", "--model", "nope")
    assert out.returncode == 2 and "known models" in out.stderr


def test_demo_runs_offline_and_writes_report(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    env_run = subprocess.run(
        [sys.executable, "-m", "openclap", "demo", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"},
    )
    assert env_run.returncode == 0, env_run.stderr
    assert "zero-shot:" in env_run.stdout and "of 17 right" in env_run.stdout
    report = (out / "report.md").read_text()
    assert "## Zero-shot classification" in report and "## Text search" in report
    png = (out / "similarity.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
