"""The expected-reference validation of the captioning trainer: which captions a clip could have drawn."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from openclap_train.config import ManifestSpec, TrainConfigError
from openclap_train.data import read_manifest, reference_draws


def _write(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def test_reference_draws_group_by_metadata_within_the_split(tmp_path: Path) -> None:
    rows = [
        {"path": "a0.wav", "caption": "a man says zero", "speaker": "a", "digit": "0", "split": "train"},
        {"path": "a1.wav", "caption": "the spoken digit zero", "speaker": "a", "digit": "0", "split": "train"},
        {"path": "a2.wav", "caption": "zero, said slowly", "speaker": "a", "digit": "0", "split": "train"},
        {"path": "a4.wav", "caption": "zero, said slowly", "speaker": "a", "digit": "0", "split": "train"},
        {"path": "a5.wav", "caption": "a man says zero", "speaker": "a", "digit": "0", "split": "train"},
        {"path": "a3.wav", "caption": "a man says one", "speaker": "a", "digit": "1", "split": "train"},
        {"path": "b0.wav", "caption": "b says zero", "speaker": "b", "digit": "0", "split": "train"},
        {"path": "t0.wav", "caption": "TEST zero", "speaker": "a", "digit": "0", "split": "test"},
    ]
    manifest = _write(tmp_path / "m.csv", rows)
    spec = ManifestSpec(path=str(manifest), split="train", include={"path": ["a0.wav", "a3.wav"]},
                        reference_group=["speaker", "digit"])
    samples = read_manifest(spec)
    draws = reference_draws(spec, samples)
    # own caption first, then the split's other captions of the same speaker and digit, each text once (a
    # repeated template must not weigh more); never the test row's
    assert draws == [["a man says zero", "the spoken digit zero", "zero, said slowly"], ["a man says one"]]
    # without a group: the clip's own caption only
    assert reference_draws(ManifestSpec(path=str(manifest), split="train"), samples) == [
        ["a man says zero"], ["a man says one"]
    ]
    with pytest.raises(ValueError, match="reference_group columns \\['accent'\\]"):
        bad = ManifestSpec(path=str(manifest), split="train", reference_group=["accent"])
        reference_draws(bad, samples)
    with pytest.raises(TrainConfigError, match="needs a split"):
        ManifestSpec(path=str(manifest), reference_group=["speaker"])


def test_fsdd_draws_are_the_speakers_other_takes_of_the_digit(shared_data: Path) -> None:
    manifest = shared_data / "fsdd" / "manifest.csv"
    spec = ManifestSpec(path=str(manifest), split="train",
                        include={"source_id": ["fsdd:theo"], "take": ["5"]}, reference_group=["speaker", "digit"])
    samples = read_manifest(spec)
    draws = reference_draws(spec, samples)
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(samples) == 10
    leaks = 0
    for s, d in zip(samples, draws):
        # the captions of theo's other train takes (5-49; 0-4 are the test split) of that digit, each once
        group = [r for r in rows if r["speaker"] == "theo" and r["label"] == s.label]
        others = [r["caption"] for r in group if r["split"] == "train" and r["take"] != "5"]
        assert d == [s.caption, *dict.fromkeys(c for c in others if c != s.caption)]
        assert len(d) == len(set(d)) >= 2 and all(s.label in c.split() for c in d)  # the digit's word
        leaks += bool({r["caption"] for r in group if r["split"] == "test"} - set(d))
    assert leaks >= 3  # test-split takes carry captions the draws must not include: the check can tell
