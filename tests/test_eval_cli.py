"""`openclap eval ...` end to end through `openclap.cli.main` with the `tiny` preset."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest
import soundfile as sf

import openclap.cli

DATA = Path(__file__).resolve().parent / "data"  # the committed test corpus (conftest.TEST_DATA)
SHARED = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data"
)  # what configs/eval/shared-data.toml reads


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture()
def cli(monkeypatch, tmp_path):
    """`openclap` as cli.py registers it (no test adds a command of its own), with its own cache dir."""
    monkeypatch.setenv("OPENCLAP_CACHE_DIR", str(tmp_path / "cache"))
    return openclap.cli.main


def _esc50_fixture(root: Path) -> Path:
    """A 4-clip ESC-50 in its published layout (meta/esc50.csv lists all 50 classes; one clip per row)."""
    with open(DATA / "esc10" / "manifest.csv", newline="") as f:
        by_label = {r["label"]: r for r in csv.DictReader(f) if r["split"] == "test"}
    rows = [by_label[label] for label in sorted(by_label)[:4]]  # four clips of four classes
    names = {
        "dog": 0,
        "rooster": 1,
        "rain": 10,
        "sea_waves": 11,
        "crackling_fire": 12,
        "crying_baby": 20,
        "sneezing": 21,
        "clock_tick": 38,
        "helicopter": 40,
        "chainsaw": 41,
    }
    meta = [["filename", "fold", "target", "category", "esc10", "src_file", "take"]]
    for k, r in enumerate(rows):
        name = f"{k + 1}-{r['freesound_id']}-A-{names[r['label']]}.wav"
        wave, rate = sf.read(DATA / "esc10" / r["path"], dtype="int16")
        (root / "audio").mkdir(parents=True, exist_ok=True)
        sf.write(root / "audio" / name, wave, rate, subtype="PCM_16")
        meta.append([name, k % 2 + 1, names[r["label"]], r["label"], "True", r["freesound_id"], "A"])
    present = {int(m[2]) for m in meta[1:]}
    meta += [[f"5-0-A-{t}.wav", 5, t, f"class_{t}", "False", 0, "A"] for t in range(50) if t not in present]
    (root / "meta").mkdir(parents=True, exist_ok=True)
    with open(root / "meta" / "esc50.csv", "w", newline="") as f:
        csv.writer(f).writerows(meta)
    return root


def test_zeroshot_manifest_json_and_report(cli, tmp_path, capsys):
    out = tmp_path / "report"
    rc = cli(
        [
            "eval",
            "zeroshot",
            "--manifest",
            str(DATA / "esc10" / "manifest.csv"),
            "--split",
            "test",
            "--limit",
            "10",
            "--json",
            "--out",
            str(out),
            "--no-progress",
            "--model",
            "tiny",
        ]
    )
    assert rc == 0
    payload = json.loads(capsys.readouterr().out)
    result = payload["results"][0]
    assert payload["model"]["name"] == "tiny" and len(payload["model"]["fingerprint"]) == 32
    assert result["kind"] == "zeroshot" and result["dataset"] == "esc10" and result["task"] == "single_label"
    assert result["num_items"] == 10 and result["num_evaluated"] == 10 and result["excluded"]["count"] == 0
    confusion = result["confusion_matrix"]
    assert len(confusion) == 10 and sum(map(sum, confusion)) == 10
    # a fraction, not a percentage: the confusion matrix's diagonal over the 10 clips
    assert result["metrics"]["accuracy"] == pytest.approx(sum(confusion[i][i] for i in range(10)) / 10)
    assert result["templates"] == ["this is the sound of {}"]
    saved = json.loads((out / "results.json").read_text())
    assert saved["results"][0]["metrics"] == result["metrics"]
    assert "| zeroshot | esc10 | test | accuracy |" in (out / "results.md").read_text()
    pytest.importorskip("matplotlib")
    png = out / "confusion_esc10.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_zeroshot_dataset_table_shows_the_paper_number(cli, tmp_path, capsys):
    root = _esc50_fixture(tmp_path / "ESC-50-master")
    templates = tmp_path / "templates.txt"
    templates.write_text("this is the sound of {}\na recording of {}\n")
    out = tmp_path / "report"
    rc = cli(
        [
            "eval",
            "zeroshot",
            "--dataset",
            "esc50",
            "--root",
            str(root),
            "--templates",
            str(templates),
            "--out",
            str(out),
        ]
    )
    assert rc == 1  # the 46 stub rows point at files that do not exist: excluded and reported
    captured = capsys.readouterr()
    assert "93.9" in captured.out and "4/50" in captured.out  # paper column, clips evaluated/total
    assert "46 file(s) were missing or unreadable" in captured.err
    md = (out / "results.md").read_text()
    assert "| zeroshot | esc50 | - | accuracy |" in md and "| 93.9 |" in md
    assert "46 of 50 file(s) excluded (46 missing, 0 unreadable)" in md


def test_retrieval_and_linear_probe_commands(cli, capsys):
    manifest = str(DATA / "esc10" / "manifest.csv")
    assert (
        cli(["eval", "retrieval", "--manifest", manifest, "--split", "test", "--limit", "8", "--json"]) == 0
    )
    result = json.loads(capsys.readouterr().out)["results"][0]
    assert result["kind"] == "retrieval" and result["num_captions"] == 8
    assert set(result["metrics"]["text_to_audio"]) >= {"R@1", "R@5", "R@10", "mAP@10"}
    assert (
        cli(
            [
                "eval",
                "linear-probe",
                "--manifest",
                manifest,
                "--train-split",
                "train",
                "--test-split",
                "test",
                "--limit",
                "20",
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)["results"][0]
    assert result["kind"] == "linear-probe" and set(result["metrics"]) == {"accuracy", "accuracy_std"}


def test_suite_writes_one_report(cli, tmp_path, capsys):
    root = _esc50_fixture(tmp_path / "data" / "ESC-50-master")
    suite = tmp_path / "suite.toml"
    suite.write_text(f"""
model = "tiny"
template = "this is the sound of {{}}"

[[tasks]]
eval = "zeroshot"
dataset = "esc50"
root = "data/ESC-50-master"

[[tasks]]
eval = "retrieval"
dataset = "manifest"
manifest = "{DATA / "esc10" / "manifest.csv"}"
label_column = "caption"
split = "test"
limit = 12
""")
    out = tmp_path / "suite_report"
    rc = cli(["eval", "suite", "--config", str(suite), "--out", str(out), "--json"])
    assert rc == 1 and root.is_dir()
    payload = json.loads(capsys.readouterr().out)
    assert [r["kind"] for r in payload["results"]] == ["zeroshot", "retrieval"]
    assert (out / "results.json").is_file() and (out / "results.md").is_file()
    if importlib.util.find_spec("matplotlib") is not None:
        assert {"confusion_esc50.png", "similarity_esc10.png"} <= {p.name for p in out.glob("*.png")}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eval", "zeroshot", "--dataset", "esc-51", "--root", "."], "unknown dataset"),
        (["eval", "zeroshot", "--dataset", "esc50"], "needs --root"),
        (["eval", "zeroshot", "--dataset", "esc50", "--root", "/nonexistent"], "not a folder"),
        (["eval", "zeroshot", "--manifest", "m.csv", "--template", "no placeholder"], "exactly once"),
    ],
)
def test_usage_errors_exit_2(cli, capsys, argv, message):
    assert cli(argv) == 2
    assert message in capsys.readouterr().err


def test_shipped_suite_configs_parse(monkeypatch):
    from openclap.eval.suite import load_suite

    configs = Path(__file__).resolve().parents[1] / "configs" / "eval"
    monkeypatch.setenv("OPENCLAP_DATA", "/data")
    monkeypatch.setenv("OPENCLAP_WEIGHTS", "/weights")
    paper = load_suite(configs / "paper-2023.toml")
    assert paper.model == "msclap-2023" and paper.checkpoint == "/weights/CLAP_weights_2023.pth"
    assert {t.dataset for t in paper.tasks} >= {"esc50", "urbansound8k", "fsd50k", "clotho", "audiocaps"}
    assert all(t.templates == ["this is the sound of {}"] for t in paper.tasks)
    shared = load_suite(configs / "shared-data.toml")
    assert shared.tasks[0].templates[0] == "this is the sound of {}" and len(shared.tasks[0].templates) == 4
    assert shared.tasks[0].manifest.resolve() == (SHARED / "esc10" / "manifest.csv").resolve()
    monkeypatch.delenv("OPENCLAP_DATA")
    with pytest.raises(ValueError, match="not set"):
        load_suite(configs / "paper-2023.toml")


def test_suite_rejects_unknown_keys(tmp_path):
    from openclap.eval.suite import load_suite

    (tmp_path / "s.toml").write_text(
        '[[tasks]]\neval = "zeroshot"\ndataset = "esc50"\nroot = "x"\ntemplat = "a {}"\n'
    )
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['templat'\]"):
        load_suite(tmp_path / "s.toml")
    (tmp_path / "s.json").write_text('{"tasks": [{"eval": "zero-shot", "dataset": "esc50", "root": "x"}]}')
    with pytest.raises(ValueError, match="'eval' must be one of"):
        load_suite(tmp_path / "s.json")


def test_datasets_listing(cli, capsys):
    assert cli(["eval", "datasets", "--json"]) == 0
    entries = {e["name"]: e for e in json.loads(capsys.readouterr().out)}
    assert entries["fsd50k"]["task"] == "multi_label" and "FSD50K.ground_truth" in entries["fsd50k"]["layout"]
    assert entries["clotho"]["splits"] == ["evaluation", "validation", "development"]
