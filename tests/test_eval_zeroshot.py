"""Zero-shot and retrieval on the test corpus (tests/data) test splits with the `tiny` preset (random weights).

A random model must not beat chance: a label-permutation test (seed-fixed) checks that predictions
carry no information about the labels. Under H0 (predictions independent of labels) the permutation
p-value is uniform, so requiring p >= 0.001 fails a non-leaking evaluation with probability 0.001;
a leak (e.g. scores aligned with targets by a bug) gives p = 1 / (1 + permutations).
Also: template averaging, the embedding cache (a second run decodes nothing), bad-file accounting.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from openclap.eval import metrics
from openclap.eval.cache import EmbeddingCache, embed_files, pipeline_fingerprint
from openclap.eval.datasets import Manifest
from openclap.eval.retrieval import retrieval
from openclap.eval.zero_shot import class_text_embeddings, read_templates, zero_shot

PERMUTATIONS = 2000
ALPHA = 1e-3


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(shared_data: Path) -> Path:
    """The committed test corpus (tests/data)."""
    return shared_data


@pytest.fixture(scope="module")
def pipeline():
    import openclap.pipeline

    return openclap.pipeline.load("tiny")


@pytest.fixture(scope="module")
def cache(tmp_path_factory, pipeline):
    with EmbeddingCache(tmp_path_factory.mktemp("cache"), pipeline_fingerprint(pipeline)) as c:
        yield c


def permutation_pvalue(pred: np.ndarray, target: np.ndarray, seed: int = 0) -> float:
    """One-sided p-value of accuracy(pred, target) against label permutations."""
    rng = np.random.default_rng(seed)
    observed = np.mean(pred == target)
    null = np.array([np.mean(pred == rng.permutation(target)) for _ in range(PERMUTATIONS)])
    return float((1 + np.sum(null >= observed)) / (1 + PERMUTATIONS))


def test_permutation_test_detects_a_leak():
    rng = np.random.default_rng(1)
    target = rng.integers(0, 10, 200)
    assert permutation_pvalue(target.copy(), target) == pytest.approx(1 / (1 + PERMUTATIONS))
    assert permutation_pvalue(rng.integers(0, 10, 200), target) > ALPHA


@pytest.mark.parametrize("subset", ["esc10", "fsdd", "instruments"])
def test_random_model_zero_shot_is_at_chance(data, pipeline, cache, subset):
    ds = Manifest().load(data / subset / "manifest.csv", split="test")  # the whole test split
    result = zero_shot(pipeline, ds, cache=cache)
    assert result.num_evaluated == len(ds) and result.excluded["count"] == 0
    pred, target = result.predictions, result.targets
    p = permutation_pvalue(pred, target)
    assert p >= ALPHA, f"{subset}: accuracy {result.metrics['accuracy']:.3f} is above chance (p={p:.4f})"
    # Expected accuracy under independence, given both marginals; the observed value is within 4 sd.
    num_classes = len(ds.classes)
    p_pred = np.bincount(pred, minlength=num_classes) / len(pred)
    p_true = np.bincount(target, minlength=num_classes) / len(target)
    chance = float(p_pred @ p_true)
    assert abs(result.metrics["accuracy"] - chance) <= 4 * np.sqrt(chance * (1 - chance) / len(pred)) + 1e-9
    assert result.confusion.sum() == len(ds)


def test_random_model_retrieval_is_at_chance(data, pipeline, cache):
    ds = Manifest(label_column="caption").load(data / "esc10" / "manifest.csv")  # both splits: 31 clips
    n = len(ds)
    result = retrieval(pipeline, ds, cache=cache)
    assert result.num_evaluated == n == 31 and result.num_captions == n
    # Permutation test on the text-to-audio R@10: shuffle which clip each caption belongs to.
    audio = embed_files(pipeline, [i.path for i in ds.items], cache=cache).embeddings
    text = pipeline.embed_text([i.captions[0] for i in ds.items])
    sim = audio @ text.T
    observed = result.text_to_audio["R@10"]
    assert observed == pytest.approx(
        metrics.retrieval_metrics_from_similarity(sim, np.arange(n)).text_to_audio["R@10"]
    )
    rng = np.random.default_rng(0)
    null = [
        metrics.retrieval_metrics_from_similarity(sim, rng.permutation(n)).text_to_audio["R@10"]
        for _ in range(200)
    ]
    p = (1 + sum(v >= observed for v in null)) / (1 + len(null))
    assert p >= 0.005, f"R@10 {observed:.3f} above chance (p={p:.4f})"


def test_templates_are_averaged_and_read_from_a_file(tmp_path, pipeline):
    names = ["dog", "rain"]
    one = class_text_embeddings(pipeline, names, ["a {}"])
    two = class_text_embeddings(pipeline, names, ["the sound of {}"])
    both = class_text_embeddings(pipeline, names, ["a {}", "the sound of {}"])
    expected = (one + two) / np.linalg.norm(one + two, axis=1, keepdims=True)
    np.testing.assert_allclose(both, expected, atol=1e-5)
    assert both.dtype == np.float32
    with pytest.raises(ValueError, match=r"need at least one template, e.g. 'this is the sound of \{\}'"):
        class_text_embeddings(pipeline, names, [])
    (tmp_path / "t.txt").write_text("# prompts\na {}\n\n  # an indented comment {}\nthe sound of {}\n")
    assert read_templates(str(tmp_path / "t.txt")) == ["a {}", "the sound of {}"]
    (tmp_path / "bad.txt").write_text("no placeholder\n")
    with pytest.raises(ValueError, match="exactly once"):
        read_templates(str(tmp_path / "bad.txt"))
    (tmp_path / "empty.txt").write_text("# only a comment\n\n")
    with pytest.raises(ValueError, match=r"empty.txt holds no template; write one per line"):
        read_templates(str(tmp_path / "empty.txt"))


def test_top5_accuracy_counts_rank_5_not_6_and_needs_more_than_5_classes():
    from openclap.eval.zero_shot import score_single_label

    # the true class 0 ranks 5th for clip 0 and 6th (last) for clip 1
    scores = np.array([[0.5, 0.9, 0.8, 0.7, 0.6, 0.1], [0.0, 0.9, 0.8, 0.7, 0.6, 0.5]])
    out, _, _ = score_single_label(scores, np.array([0, 0]), list("abcdef"))
    assert out["top5_accuracy"] == 0.5
    five, _, _ = score_single_label(scores[:, :5], np.array([0, 0]), list("abcde"))
    assert "top5_accuracy" not in five  # with 5 classes top-5 accuracy is always 1: not reported


def test_multi_hot_by_hand():
    from openclap.eval.zero_shot import multi_hot

    got = multi_hot([[0, 2], [], [1]], 3)
    assert got.dtype == np.int64 and got.tolist() == [[1, 0, 1], [0, 0, 0], [0, 1, 0]]


def test_zero_shot_refuses_a_retrieval_dataset(tmp_path):
    from openclap.eval.datasets.base import RETRIEVAL, EvalDataset, EvalItem

    captions = EvalDataset("clotho", RETRIEVAL, tmp_path, [EvalItem(tmp_path / "a.wav", captions=("a dog",))])
    with pytest.raises(
        ValueError,
        match=r"clotho is a retrieval dataset; zero-shot needs classes \(use `openclap eval retrieval`",
    ):
        zero_shot(None, captions)


def test_cache_makes_the_second_evaluation_decode_nothing(tmp_path, data, pipeline, monkeypatch):
    ds = Manifest().load(data / "esc10" / "manifest.csv", split="train").subset(range(12))
    with EmbeddingCache(tmp_path / "cache", pipeline_fingerprint(pipeline)) as cache:
        first = zero_shot(pipeline, ds, cache=cache)
        assert first.timing["computed"] == 12 and first.timing["cached"] == 0 and len(cache) == 12

        def no_decoding(*args, **kwargs):
            raise AssertionError("audio decoded although every embedding is cached")

        monkeypatch.setattr("openclap.pipeline.load_audio", no_decoding)
        second = zero_shot(pipeline, ds, ["a recording of {}"], cache=cache)
        assert second.timing["cached"] == 12 and second.timing["computed"] == 0
        np.testing.assert_array_equal(first.targets, second.targets)
    # Same embeddings with and without the cache.
    monkeypatch.undo()
    fresh = zero_shot(pipeline, ds, ["a recording of {}"])
    np.testing.assert_allclose(fresh.scores, second.scores, atol=1e-6)


def test_cache_misses_when_the_file_or_the_model_changes(tmp_path, data, pipeline):
    src = sorted((data / "esc10" / "audio").glob("*.flac"))[:2]
    files = [Path(shutil.copy(s, tmp_path / s.name)) for s in src]
    with EmbeddingCache(tmp_path / "cache", "model-a") as cache:
        embed_files(pipeline, files, cache=cache)
        assert cache.get(files[0]) is not None
        shutil.copy(src[1], files[0])  # new content (size and mtime differ)
        assert cache.get(files[0]) is None
        again = embed_files(pipeline, files, cache=cache)
        assert (again.cached, again.computed) == (1, 1)
    with EmbeddingCache(tmp_path / "cache", "model-b") as other:
        assert other.get(files[1]) is None


def test_bad_and_missing_files_are_counted_and_excluded(tmp_path, data, pipeline, caplog):
    with open(data / "esc10" / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))[:6]
    (tmp_path / "broken.flac").write_bytes(b"fLaC" + bytes(100))
    (tmp_path / "empty.wav").write_bytes(b"")
    lines = ["path,label"] + [f"{data / 'esc10' / r['path']},{r['label']}" for r in rows]
    lines += ["broken.flac,dog", "empty.wav,rain", "nowhere.wav,dog"]
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    ds = Manifest().load(tmp_path / "m.csv")
    with caplog.at_level("WARNING"):
        result = zero_shot(pipeline, ds)
    assert result.num_items == 9 and result.num_evaluated == 6
    assert (
        result.excluded["count"] == 3
        and result.excluded["missing"] == 1
        and result.excluded["unreadable"] == 2
    )
    assert {f["path"] for f in result.excluded["files"]} == {
        str(tmp_path / n) for n in ("broken.flac", "empty.wav", "nowhere.wav")
    }
    summary = [r for r in caplog.records if "excluded" in r.getMessage()]
    assert len(summary) == 1 and "3 of 9" in summary[0].getMessage()  # reported once, with counts
    # the JSON form (`openclap eval --json`, results.json) carries the same numbers under its documented keys
    d = json.loads(json.dumps(result.as_dict()))
    assert d["kind"] == "zeroshot" and (d["dataset"], d["task"], d["split"]) == (
        result.dataset,
        result.task,
        result.split,
    )
    assert (d["num_items"], d["num_evaluated"], d["excluded"]["count"]) == (9, 6, 3)
    assert d["classes"] == result.classes and d["templates"] == result.templates
    assert d["metrics"] == result.metrics and d["per_class"] == result.per_class
    assert d["confusion_matrix"] == result.confusion.tolist() and np.sum(d["confusion_matrix"]) == 6
    assert d["timing"] == result.timing and d["notes"] == result.notes
