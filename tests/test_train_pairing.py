"""CLAP training learns the right pairing, and the trainer's validation metrics are the hand-computed ones.

Ten real (clip, caption) pairs (the ESC-10 demo clips, 5 s each, one per class) are overfitted through the
trainer's public entry (``openclap_train.train.main`` with a recipe and a run directory): the loss falls
from ~ln(10), audio-to-text R@1 of the exported model is far above chance (1/10) for the true pairing and
at chance for a shuffled one (a loss that paired captions with the wrong clips would learn the shuffle or
nothing). The recipe validates on the same pairs with each caption as its class label, and the
``val/*`` numbers in metrics.jsonl must equal those recomputed here from the exported model.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

import openclap
from openclap_train.train import main

DEMO = Path(openclap.__file__).parent / "assets" / "demo"
STEPS = 40


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    with open(DEMO / "manifest.csv", newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["dataset"] == "esc10"]
    rows = [{"path": str(DEMO / r["path"]), "caption": r["caption"], "label": r["caption"]} for r in rows]
    manifest = tmp_path_factory.mktemp("pairs") / "pairs.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["path", "caption", "label"])
        w.writeheader()
        w.writerows(rows)
    assert len({r["caption"] for r in rows}) == len(rows) == 10
    return manifest, rows


@pytest.fixture(scope="module")
def run(pairs, tmp_path_factory: pytest.TempPathFactory) -> Path:
    manifest, _ = pairs
    root = tmp_path_factory.mktemp("run")
    recipe = {
        "model": "tiny",
        "model_overrides": {"projection_dropout": 0.0, "audio": {"htsat": {"drop_path_rate": 0.0}},
                            "text": {"transformer": {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}}},
        "train_manifest": [str(manifest)],
        "val_manifest": [{"path": str(manifest), "name": "pairs", "template": "{}"}],
        "batch_size": 10, "max_steps": STEPS, "optim": {"warmup_steps": 2, "lr": 3e-3}, "log_every": 1,
        "eval_every": STEPS, "save_every": STEPS, "batchnorm": "frozen", "seed": 0, "num_workers": 0,
    }  # fmt: skip
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    assert main([str(root / "recipe.yaml"), "--run-dir", str(root / "run")]) == 0
    return root / "run"


def _a2t_r1(audio: np.ndarray, text: np.ndarray) -> float:
    return float(np.mean(np.argmax(audio @ text.T, axis=1) == np.arange(len(audio))))


def test_training_learns_the_pairing_not_a_shuffle(run: Path, pairs) -> None:
    _, rows = pairs
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == STEPS and losses[0] == pytest.approx(math.log(10), abs=0.5)
    assert np.mean(losses[-5:]) < 0.25 * losses[0]

    pipe = openclap.load(run / "final")
    audio = pipe.embed_audio([r["path"] for r in rows])
    text = pipe.embed_text([r["caption"] for r in rows])
    assert _a2t_r1(audio, text) >= 0.8  # chance: 0.1
    shuffled = np.roll(np.arange(10), 3)
    assert _a2t_r1(audio, text[shuffled]) <= 0.2


def test_validation_metrics_equal_hand_computed(run: Path, pairs) -> None:
    _, rows = pairs
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in records if "val/pairs/t2a_R@1" in r]
    assert [r["step"] for r in val] == [STEPS]

    pipe = openclap.load(run / "final")
    audio = pipe.embed_audio([r["path"] for r in rows])
    captions = [r["caption"] for r in rows]
    sims = audio @ pipe.embed_text(captions).T  # (clips, captions); caption i belongs to clip i
    order = np.argsort(-sims.T, axis=1)  # per caption, clips best first
    for k in (1, 5):
        expected = np.mean([i in order[i, :k] for i in range(10)])
        assert val[0][f"val/pairs/t2a_R@{k}"] == pytest.approx(expected, abs=1e-6)
    # zero-shot: classes are the sorted labels (= captions here), prompt "{}" is the label itself
    classes = sorted(captions)
    class_sims = audio @ pipe.embed_text(classes).T
    truth = [classes.index(c) for c in captions]
    expected_acc = np.mean(np.argmax(class_sims, axis=1) == truth)
    assert val[0]["val/pairs/zeroshot_acc"] == pytest.approx(expected_acc, abs=1e-6)
    assert expected_acc >= 0.8 and val[0]["val/pairs/t2a_R@1"] >= 0.8  # values that can tell a bug apart
