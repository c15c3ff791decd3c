"""openclap-mini, the bundled model: loads offline, embeds, and classifies the bundled demo clips.

The accuracy check uses the 17 demo clips shipped in ``src/openclap/assets/demo`` (10 ESC-10 sounds, 2
spoken digits, 5 instrument notes), scored against their own label sets (10 ESC-10 classes, 10 digits,
12 instrument families) with the prompt templates stored beside the weights (chosen on the validation
split, see docs/openclap-mini.md). The threshold is a sanity margin below the measured figure, not a tuned number: see the test.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

import openclap
from openclap.registry import bundled_model_dir

DEMO = Path(openclap.__file__).parent / "assets" / "demo"
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
ESC10 = [
    "chainsaw",
    "clock tick",
    "crackling fire",
    "crying baby",
    "dog",
    "helicopter",
    "rain",
    "rooster",
    "sea waves",
    "sneezing",
]
FAMILIES = [
    "bass",
    "brass",
    "drums",
    "flute",
    "guitar",
    "keyboard",
    "mallet",
    "organ",
    "plucked string",
    "reed",
    "strings",
    "vocal",
]
FAMILY_OF = {
    "acoustic grand piano": "keyboard",
    "violin": "strings",
    "timpani": "drums",
    "trumpet": "brass",
    "piccolo": "flute",
}


@pytest.fixture(scope="module")
def mini(monkeypatch_module):
    """The bundled pipeline, loaded with the hub forced offline."""
    monkeypatch_module.setenv("HF_HUB_OFFLINE", "1")
    return openclap.load("openclap-mini")


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_bundled_files_and_size():
    path = bundled_model_dir("openclap-mini")
    assert path is not None, "src/openclap/assets/models/openclap-mini/config.json is missing"
    weights = path / "model.safetensors"
    assert weights.stat().st_size <= 25 * 1024 * 1024
    assert (path / "tokenizer" / "tokenizer.json").is_file()
    templates = json.loads((path / "templates.json").read_text())
    assert set(templates) == {"default", "fsdd", "esc10", "instruments", "family"}
    assert all("{}" in t for t in templates.values())


def test_loads_offline_and_embeds(mini):
    assert mini.model.config.name == "openclap-mini"
    assert not mini.model.training
    audio = mini.embed_audio([str(DEMO / "7_theo_0.flac"), str(DEMO / "4-183992-A-dog.flac")])
    text = mini.embed_text(["a man says the number seven", "a dog barking"])
    assert audio.shape == (2, mini.model.config.embed_dim) and text.shape == audio.shape
    np.testing.assert_allclose(np.linalg.norm(audio, axis=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-4)
    # deterministic: the same clip twice gives the same embedding
    again = mini.embed_audio([str(DEMO / "7_theo_0.flac")])
    np.testing.assert_allclose(again[0], audio[0], atol=1e-5)


def _tail_at_chance(chances: list[float], k: int) -> float:
    """P(at least k correct) when clip i is guessed right with probability chances[i] (Poisson binomial)."""
    dist = [1.0]
    for p in chances:
        dist = [
            (dist[j] if j < len(dist) else 0.0) * (1 - p) + (dist[j - 1] * p if j >= 1 else 0.0)
            for j in range(len(dist) + 1)
        ]
    return sum(dist[k:])


def test_classifies_demo_clips_well_above_chance(mini):
    templates = json.loads((bundled_model_dir("openclap-mini") / "templates.json").read_text())
    with open(DEMO / "manifest.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    correct, chances = 0, []
    for dataset, labels, template in (
        ("esc10", ESC10, templates["esc10"]),
        ("fsdd", DIGITS, templates["fsdd"]),
        ("instruments", FAMILIES, templates["family"]),
    ):
        clips = [r for r in rows if r["dataset"] == dataset]
        truth = [
            FAMILY_OF[r["label"]] if dataset == "instruments" else r["label"].replace("_", " ") for r in clips
        ]
        results = mini.classify([str(DEMO / r["path"]) for r in clips], labels, template=template)
        predicted = [res.labels[0] for res in results]
        correct += sum(p == t for p, t in zip(predicted, truth))
        chances += [1 / len(labels)] * len(clips)
    n = len(rows)
    # 17 clips; guessing gets ~1.6 right. The measured test accuracies (docs/openclap-mini.md: ESC-10 81 %,
    # FSDD 92 %, family 70 %) predict ~13.5/17 (10 x 0.81 + 2 x 0.92 + 5 x 0.70; the shipped weights get
    # 15, the weights before them 12). Threshold 8/17: a margin for a retrain of the same recipe, and a
    # chance-level model reaches it with probability < 1e-4. A check that the weights and prompts are the
    # trained ones, not a benchmark.
    assert n == 17 and sum(chances) < 2
    assert _tail_at_chance(chances, 8) < 1e-4
    assert correct >= 8, f"only {correct}/{n} demo clips classified correctly"
