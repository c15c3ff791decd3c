"""Linear probe: the torch logistic regression against scikit-learn, folds, and an end-to-end run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from openclap.eval.datasets import Manifest
from openclap.eval.linear_probe import (
    ProbeConfig,
    linear_probe,
    predict_scores,
    probe_folds,
    stratified_folds,
    train_logistic,
)
from openclap.eval.runner import evenly_spaced

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _blobs(seed: int, n: int = 240, dim: int = 16, classes: int = 4, spread: float = 0.5):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, dim))
    y = rng.integers(0, classes, n)
    return centers[y] * spread + rng.normal(size=(n, dim)), y


def test_probe_matches_sklearn_logistic_regression():
    sklearn_lm = pytest.importorskip("sklearn.linear_model")
    x, y = _blobs(0)
    x_test, y_test = _blobs(0, n=400)  # same centers (same seed), fresh samples
    x_test, y_test = x_test[240:], y_test[240:]
    config = ProbeConfig(weight_decay=1e-2)
    params = train_logistic(x, y, 4, False, config)
    ours = np.mean(predict_scores(x_test, params).argmax(1) == y_test)
    # sklearn's C multiplies the summed loss; ours is the mean loss + wd/2 ||W||^2 on standardised features.
    mean, std = x.mean(0), x.std(0)
    ref = sklearn_lm.LogisticRegression(C=1 / (config.weight_decay * len(x)), max_iter=2000, tol=1e-8)
    ref.fit((x - mean) / std, y)
    theirs = ref.score((x_test - mean) / std, y_test)
    assert ours == pytest.approx(theirs, abs=0.02)
    np.testing.assert_allclose(
        params[0].numpy() - params[0].numpy().mean(1, keepdims=True),
        ref.coef_.T - ref.coef_.T.mean(1, keepdims=True),
        atol=2e-3,
    )


def test_probe_learns_separable_data_and_not_random_labels():
    x, y = _blobs(1, spread=2.0)
    folds = stratified_folds(y, 4, seed=0)
    _, scores = probe_folds(x, y, folds, "single_label", 4, ProbeConfig())
    assert min(scores) > 0.95
    y_random = np.random.default_rng(2).integers(0, 4, len(y))
    _, scores = probe_folds(x, y_random, folds, "single_label", 4, ProbeConfig())
    assert np.mean(scores) < 0.40  # chance is 0.25


def test_multi_label_probe_reports_map():
    x, y = _blobs(3, spread=2.0)
    targets = np.stack([y == 0, y == 1, (y == 1) | (y == 2)], axis=1).astype(int)
    folds = [str(i % 3 + 1) for i in range(len(y))]
    names, scores = probe_folds(x, targets, folds, "multi_label", 3, ProbeConfig())
    assert names == ["1", "2", "3"] and min(scores) > 0.9


def test_stratified_folds_are_balanced_and_deterministic():
    y = np.repeat(np.arange(3), [10, 7, 5])
    folds = stratified_folds(y, 5, seed=0)
    assert folds == stratified_folds(y, 5, seed=0)
    for c in range(3):
        counts = np.bincount([int(f) for f, label in zip(folds, y) if label == c], minlength=6)[1:]
        assert counts.max() - counts.min() <= 1
    with pytest.raises(ValueError, match="at least 2 folds"):
        probe_folds(np.zeros((4, 2)), np.array([0, 1, 0, 1]), ["1"] * 4, "single_label", 2, ProbeConfig())


def test_linear_probe_end_to_end_on_real_clips(shared_data):
    """linear_probe's scores equal the probe recomputed here on the pipeline's embeddings of the same files,
    with labels read from the manifest's ``label`` column (so a misaligned embedding or target row shows)."""
    import csv

    import openclap.pipeline

    pipeline = openclap.pipeline.load("openclap-mini")  # trained: embeddings a probe can classify
    manifest = shared_data / "esc10" / "manifest.csv"
    train = evenly_spaced(Manifest().load(manifest, split="train"), 20)
    test = evenly_spaced(Manifest().load(manifest, split="test"), 10)
    with open(manifest, newline="", encoding="utf-8") as f:
        label_of = {Path(r["path"]).name: r["label"] for r in csv.DictReader(f)}
    classes = [c.replace(" ", "_") for c in train.classes]

    def xy(dataset):
        x = np.asarray(pipeline.embed_audio([str(it.path) for it in dataset.items]))
        return x, np.array([classes.index(label_of[Path(it.path).name]) for it in dataset.items])

    (x_train, y_train), (x_test, y_test) = xy(train), xy(test)
    assert len(set(y_train)) >= 5  # several classes: a shifted target row changes the score
    params = train_logistic(x_train, y_train, len(classes), False, ProbeConfig())
    expected = float(np.mean(predict_scores(x_test, params).argmax(1) == y_test))

    result = linear_probe(pipeline, train, test_dataset=test)
    assert result.metric == "accuracy" and result.fold_names == ["test"]
    assert expected >= 0.5  # informative (chance 0.1): a misaligned row changes the score
    assert result.mean == pytest.approx(expected, abs=1e-9) and result.std == 0.0
    assert result.num_evaluated == 30 and result.excluded["count"] == 0

    folds = linear_probe(pipeline, train, config=ProbeConfig(num_folds=4))  # train split: official folds
    fold_of = [str(it.fold) for it in train.items]
    names, scores = [], []
    for name in sorted(set(fold_of)):  # leave one fold out, by hand
        held = np.array([f == name for f in fold_of])
        p = train_logistic(x_train[~held], y_train[~held], len(classes), False, ProbeConfig())
        names.append(name)
        scores.append(float(np.mean(predict_scores(x_train[held], p).argmax(1) == y_train[held])))
    assert folds.protocol.startswith("official folds") and folds.fold_names == names
    assert folds.fold_scores == pytest.approx(scores, abs=1e-9)
    d = folds.as_dict()
    assert d["metrics"]["accuracy"] == pytest.approx(np.mean(scores))
    assert d["metrics"]["accuracy_std"] == pytest.approx(np.std(scores))
