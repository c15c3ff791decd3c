"""`openclap caption` and `openclap eval captioning` through the real argument parser."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from openclap import cli

DEMO = Path(__file__).resolve().parents[1] / "src" / "openclap" / "assets" / "demo"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from openclap.caption.pipeline import load_captioner

    return load_captioner("clapcap-tiny").save_pretrained(tmp_path_factory.mktemp("cli") / "cap")


def _main(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> int:
    return cli.main(argv)  # the CLI as shipped: no test registers a command of its own


def test_caption_command_json_and_text(tiny_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    files = [str(DEMO / "4-183992-A-dog.flac"), str(DEMO / "3_theo_0.flac")]
    code = _main(
        monkeypatch,
        ["caption", *files, "--model", str(tiny_dir), "--beam", "2", "--max-length", "4", "--json"],
    )
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [d["path"] for d in lines] == files and all(isinstance(d["caption"], str) for d in lines)
    bad = tmp_path / "broken.flac"
    bad.write_bytes(b"xx")
    code = _main(
        monkeypatch,
        ["caption", files[0], str(bad), "--model", str(tiny_dir), "--greedy", "--max-length", "4"],
    )
    out = capsys.readouterr()
    assert code == 1 and "broken.flac" in out.err and out.out.startswith(files[0] + "\t")
    (tmp_path / "empty").mkdir()
    assert _main(monkeypatch, ["caption", str(tmp_path / "empty"), "--model", str(tiny_dir)]) == 2  # usage
    assert _main(monkeypatch, ["caption", files[0], "--model", str(tiny_dir), "--beam", "0"]) == 2


def test_eval_captioning_on_a_manifest(tiny_dir: Path, shared_data: Path, tmp_path: Path, capsys) -> None:
    from openclap.caption.evaluate import run_captioning

    with open(shared_data / "esc10" / "manifest.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "test"][:3]
    manifest = tmp_path / "m.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "caption", "label", "split"])
        w.writeheader()
        for r in rows:  # two references for the first clip: one row each
            w.writerow(
                {
                    "path": str(shared_data / "esc10" / r["path"]),
                    "caption": r["caption"],
                    "label": r["label"],
                    "split": "test",
                }
            )
        w.writerow(
            {
                "path": str(shared_data / "esc10" / rows[0]["path"]),
                "caption": rows[0]["freesound_title"],
                "label": rows[0]["label"],
                "split": "test",
            }
        )
    parser = cli.build_parser()  # the CLI's own registration, not a parser of the test's
    args = parser.parse_args(
        [
            "eval",
            "captioning",
            "--manifest",
            str(manifest),
            "--split",
            "test",
            "--model",
            str(tiny_dir),
            "--beam",
            "1",
            "--max-length",
            "4",
            "--json",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert args.func(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["scores"]["count"] == 3
    assert len(report["captions"][0]["references"]) == 2
    # the same report files as every other eval kind
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["scores"] == report["scores"]
    assert "CIDEr-D" in (tmp_path / "out" / "results.md").read_text()
    assert run_captioning is args.func
