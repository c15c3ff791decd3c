"""Linear probe: the torch logistic regression against scikit-learn, folds, and an end-to-end run."""

from __future__ import annotations

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
    import openclap.pipeline

    pipeline = openclap.pipeline.load("tiny")
    manifest = shared_data / "esc10" / "manifest.csv"
    train = evenly_spaced(Manifest().load(manifest, split="train"), 20)
    test = evenly_spaced(Manifest().load(manifest, split="test"), 10)
    result = linear_probe(pipeline, train, test_dataset=test)
    assert result.metric == "accuracy" and result.fold_names == ["test"]
    assert 0.0 <= result.mean <= 1.0 and result.std == 0.0
    assert result.num_evaluated == 30 and result.excluded["count"] == 0
    folds = linear_probe(pipeline, train, config=ProbeConfig(num_folds=4))  # train split: folds 1-2 present
    assert folds.protocol.startswith("official folds") and len(folds.fold_scores) == len(
        {i.fold for i in train.items}
    )
    d = folds.as_dict()
    assert d["metrics"]["accuracy"] == pytest.approx(np.mean(folds.fold_scores))
    assert d["metrics"]["accuracy_std"] == pytest.approx(np.std(folds.fold_scores))
