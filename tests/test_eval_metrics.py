"""Metrics checked against hand-computed values (ties included) and scikit-learn's AP."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from openclap.eval import metrics as M


# ------------------------------------------------------------------------------ classification
def test_accuracy_per_class_and_confusion_by_hand():
    pred = [0, 1, 1, 2, 0, 2]
    true = [0, 1, 2, 2, 1, 2]
    assert M.accuracy(pred, true) == pytest.approx(4 / 6)
    cm = M.confusion_matrix(pred, true, num_classes=4)
    expected = np.zeros((4, 4), dtype=np.int64)
    expected[0, 0] = 1  # true 0 -> 0
    expected[1, 1] = 1
    expected[1, 0] = 1  # true 1 -> predicted 0
    expected[2, 1] = 1
    expected[2, 2] = 2
    np.testing.assert_array_equal(cm, expected)
    per_class = M.per_class_accuracy(pred, true, num_classes=4)
    np.testing.assert_allclose(per_class[:3], [1.0, 0.5, 2 / 3])
    assert math.isnan(per_class[3])  # class 3 has no items


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_classification_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="differ in length"):
        M.accuracy([0, 1], [0])
    with pytest.raises(ValueError, match="at least one"):
        M.accuracy([], [])
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        M.confusion_matrix([0, 2], [0, 1], num_classes=2)


# -------------------------------------------------------------------------------------- AP / mAP
def test_average_precision_by_hand_with_ties():
    # Scores 0.9 (pos), 0.5 (neg), 0.5 (pos), 0.1 (pos): the tie at 0.5 is one threshold.
    # Thresholds: 0.9 -> P=1, R=1/3; 0.5 -> P=2/3, R=2/3; 0.1 -> P=3/4, R=1.
    ap = M.average_precision(np.array([0.9, 0.5, 0.5, 0.1]), np.array([1, 0, 1, 1]))
    assert ap == pytest.approx(1 / 3 * 1 + 1 / 3 * 2 / 3 + 1 / 3 * 3 / 4)
    # The same multiset with the tied pair swapped gives the same AP (ties are order-free).
    ap_swapped = M.average_precision(np.array([0.9, 0.5, 0.5, 0.1]), np.array([1, 1, 0, 1]))
    assert ap_swapped == pytest.approx(ap)
    assert math.isnan(M.average_precision(np.array([0.3, 0.2]), np.array([0, 0])))


def test_average_precision_matches_sklearn():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for trial in range(20):
        n = int(rng.integers(5, 200))
        scores = np.round(rng.normal(size=n), 1)  # rounding makes many ties
        targets = (rng.random(n) < rng.uniform(0.05, 0.6)).astype(int)
        if targets.sum() == 0:
            targets[0] = 1
        ours = M.average_precision(scores, targets)
        ref = sklearn_metrics.average_precision_score(targets, scores)
        assert ours == pytest.approx(ref, abs=1e-12), trial


def test_mean_average_precision_skips_classes_without_positives_and_matches_sklearn():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    scores = np.round(rng.normal(size=(60, 6)), 1)
    targets = (rng.random((60, 6)) < 0.3).astype(int)
    targets[:, 4] = 0  # a class with no positive: skipped, reported as NaN
    value, per_class = M.mean_average_precision(scores, targets)
    assert math.isnan(per_class[4])
    keep = [0, 1, 2, 3, 5]
    ref = sklearn_metrics.average_precision_score(targets[:, keep], scores[:, keep], average="macro")
    assert value == pytest.approx(ref, abs=1e-12)


# ------------------------------------------------------------------------------------ retrieval
def test_retrieval_one_caption_per_clip_by_hand():
    sim = np.array(
        [
            [0.9, 0.1, 0.3],
            [0.5, 0.8, 0.3],
            [0.2, 0.7, 0.3],
        ]
    )
    r = M.retrieval_metrics_from_similarity(sim, [0, 1, 2])
    # Text->audio: caption 2 sees three clips tied at 0.3 -> pessimistic rank 3.
    np.testing.assert_array_equal(r.text_to_audio_ranks, [1, 1, 3])
    assert r.text_to_audio["R@1"] == pytest.approx(2 / 3)
    assert r.text_to_audio["R@5"] == pytest.approx(1.0)
    assert r.text_to_audio["mAP@10"] == pytest.approx((1 + 1 + 1 / 3) / 3)
    # Audio->text: clip 2's caption (0.3) is beaten by caption 1 (0.7) -> rank 2.
    np.testing.assert_array_equal(r.audio_to_text_ranks, [1, 1, 2])
    assert r.audio_to_text["R@1"] == pytest.approx(2 / 3)
    assert r.audio_to_text["mAP@10"] == pytest.approx((1 + 1 + 0.5) / 3)


def test_retrieval_several_captions_per_clip_by_hand():
    sim = np.array(
        [
            [0.9, 0.2, 0.5, 0.1],  # clip 0 owns captions 0, 1
            [0.3, 0.3, 0.3, 0.8],  # clip 1 owns captions 2, 3
        ]
    )
    r = M.retrieval_metrics_from_similarity(sim, [0, 0, 1, 1])
    # Audio->text: clip 0's captions rank 1 and 3 -> AP = (1/1 + 2/3) / 2.
    # Clip 1: caption 3 rank 1; caption 2 ties with irrelevant captions 0, 1 -> rank 4 -> AP = (1 + 2/4) / 2.
    assert r.audio_to_text["R@1"] == pytest.approx(1.0)  # any caption in the top 1
    assert r.audio_to_text["mAP@10"] == pytest.approx(((1 + 2 / 3) / 2 + (1 + 2 / 4) / 2) / 2)
    assert r.audio_to_text["MRR@10"] == pytest.approx(1.0)
    # Text->audio: caption 1 column (0.2, 0.3) and caption 2 column (0.5, 0.3) rank their clip 2nd.
    np.testing.assert_array_equal(r.text_to_audio_ranks, [1, 2, 2, 1])
    assert r.text_to_audio["R@1"] == pytest.approx(0.5)
    assert r.text_to_audio["mAP@10"] == pytest.approx(0.75)


def test_retrieval_ties_among_relevant_items():
    # Clip 0 owns captions 0 and 2; all three captions score 0.5 for it: the irrelevant caption 1
    # goes first (pessimistic), then captions 0, 2 -> ranks 2, 3 -> AP = (1/2 + 2/3) / 2.
    sim = np.array([[0.5, 0.5, 0.5], [0.0, 1.0, 0.0]])
    r = M.retrieval_metrics_from_similarity(sim, [0, 1, 0])
    ranks = M.ranks_of_relevant(torch.tensor(sim[:1]), torch.tensor([[0, 2]]))
    np.testing.assert_array_equal(ranks.numpy(), [[2, 3]])
    assert r.audio_to_text_ranks[0] == 2
    ap0 = (1 / 2 + 2 / 3) / 2
    assert r.audio_to_text["mAP@10"] == pytest.approx((ap0 + 1.0) / 2)


def test_constant_similarity_scores_like_chance_not_perfect():
    n = 12
    r = M.retrieval_metrics_from_similarity(np.zeros((n, n)), np.arange(n))
    assert r.text_to_audio["R@1"] == 0.0
    assert r.text_to_audio["R@10"] == 0.0  # every clip ranks 12th
    assert r.audio_to_text["R@10"] == 0.0
    assert r.text_to_audio["median_rank"] == n


def test_chunked_equals_unchunked_and_embedding_path_equals_similarity_path(monkeypatch):
    rng = np.random.default_rng(3)
    n_audio, per_clip, dim = 37, 5, 16
    # Coarse integer embeddings make many exact ties.
    audio = rng.integers(-2, 3, size=(n_audio, dim)).astype(np.float32)
    text = rng.integers(-2, 3, size=(n_audio * per_clip, dim)).astype(np.float32)
    owner = np.repeat(np.arange(n_audio), per_clip)
    rng.shuffle(owner)
    full = M.retrieval_metrics(audio, text, owner, chunk_size=10_000)
    seen_rows = []
    original = M.ranks_of_relevant

    def spy(scores, relevant):
        seen_rows.append(scores.shape[0])
        return original(scores, relevant)

    monkeypatch.setattr(M, "ranks_of_relevant", spy)
    for chunk in (1, 4, 17):
        seen_rows.clear()
        part = M.retrieval_metrics(audio, text, owner, chunk_size=chunk)
        assert max(seen_rows) <= chunk  # never more than `chunk` query rows at once
        assert part.text_to_audio == full.text_to_audio
        assert part.audio_to_text == full.audio_to_text
        np.testing.assert_array_equal(part.text_to_audio_ranks, full.text_to_audio_ranks)
        np.testing.assert_array_equal(part.audio_to_text_ranks, full.audio_to_text_ranks)
    via_sim = M.retrieval_metrics_from_similarity(audio @ text.T, owner, chunk_size=7)
    for key, value in full.text_to_audio.items():
        assert via_sim.text_to_audio[key] == pytest.approx(value)
        assert via_sim.audio_to_text[key] == pytest.approx(full.audio_to_text[key])


def test_default_chunk_bounds_memory_for_a_large_gallery(monkeypatch):
    seen = []
    original = M.ranks_of_relevant

    def spy(scores, relevant):
        seen.append(scores.numel())
        return original(scores, relevant)

    monkeypatch.setattr(M, "DEFAULT_CHUNK_ELEMENTS", 20_000)
    monkeypatch.setattr(M, "ranks_of_relevant", spy)
    rng = np.random.default_rng(4)
    audio = rng.normal(size=(600, 8)).astype(np.float32)
    text = rng.normal(size=(600, 8)).astype(np.float32)
    M.retrieval_metrics(audio, text, np.arange(600))
    assert max(seen) <= 20_000 and len(seen) > 2


def test_scores_from_ranks_at_the_cutoff_and_beyond_by_hand():
    """First relevant ranks 1, 2, 5 (= k) and 7 (> k), k = 5; the third query has a second relevant item at 6."""
    inf = math.inf
    ranks = torch.tensor([[1.0, inf], [2.0, inf], [5.0, 6.0], [7.0, inf]])
    out = M.retrieval_scores_from_ranks(ranks, ks=(1, 5))
    assert set(out) == {"R@1", "R@5", "mAP@5", "MRR@5", "median_rank", "mean_rank"}
    assert out["R@1"] == 0.25 and out["R@5"] == 0.75  # rank 5 counts at k = 5
    assert out["MRR@5"] == pytest.approx((1 + 1 / 2 + 1 / 5 + 0) / 4)
    # AP@5 = (1 / min(R, 5)) * sum of P@i over hits within 5: 1, 1/2, (1/5) / 2, 0
    assert out["mAP@5"] == pytest.approx((1 + 1 / 2 + 1 / 10 + 0) / 4)
    assert out["mean_rank"] == pytest.approx((1 + 2 + 5 + 7) / 4)
    assert out["median_rank"] == 2.0  # torch's median: the lower of the two middle values


def test_retrieval_result_counts_and_custom_ks():
    sim = np.array([[0.9, 0.1, 0.3], [0.5, 0.8, 0.3]])  # 2 clips, 3 captions
    r = M.retrieval_metrics_from_similarity(sim, [0, 1, 1], ks=(1, 2))
    assert (r.num_audio, r.num_text) == (2, 3)
    assert set(r.text_to_audio) == set(r.audio_to_text) == {
        "R@1", "R@2", "mAP@2", "MRR@2", "median_rank", "mean_rank"
    }  # fmt: skip
    assert r.as_dict()["num_text"] == 3
    assert M.confusion_matrix([0, 1], [1, 1], 2).dtype == np.int64  # counts, not floats


def test_retrieval_rejects_captions_of_clips_that_do_not_exist():
    sim = np.zeros((2, 3))
    for bad in ([0, 1, 2], [0, 1, -1]):  # one past the last clip; negative (would wrap to the last clip)
        with pytest.raises(ValueError, match=r"\[0, 2\)"):
            M.retrieval_metrics_from_similarity(sim, bad)
    with pytest.raises(ValueError, match="2 entries but there are 3 texts"):
        M.retrieval_metrics_from_similarity(sim, [0, 1])
    with pytest.raises(ValueError, match="equal D"):
        M.retrieval_metrics(np.zeros(3), np.zeros((2, 3)), [0, 1])
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        M.mean_average_precision(np.zeros((3, 2)), np.zeros((3, 3)))


def test_retrieval_rejects_bad_input():
    with pytest.raises(ValueError, match="no caption"):
        M.retrieval_metrics_from_similarity(np.zeros((3, 2)), [0, 1])
    with pytest.raises(ValueError, match="NaN"):
        M.retrieval_metrics_from_similarity(np.array([[np.nan, 0.0], [0.0, 1.0]]), [0, 1])
    with pytest.raises(ValueError, match="equal D"):
        M.retrieval_metrics(np.zeros((2, 3)), np.zeros((2, 4)), [0, 1])


def test_zero_shot_scoring_by_hand():
    from openclap.eval.zero_shot import score_multi_label, score_single_label

    names = [f"c{i}" for i in range(7)]
    scores = np.array(
        [
            [0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1],  # true 0: correct
            [0.5, 0.4, 0.3, 0.2, 0.1, 0.0, -1.0],  # true 1: second -> top-5 hit
            [
                0.5,
                0.5,
                0.5,
                0.5,
                0.5,
                0.5,
                0.5,
            ],  # true 2: argmax tie -> class 0; 7 classes tied -> top-5 miss
            [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6],  # true 0: ranked last -> top-5 miss
        ]
    )
    targets = np.array([0, 1, 2, 0])
    out, table, confusion = score_single_label(scores, targets, names)
    assert out["accuracy"] == pytest.approx(0.25)
    assert out["top5_accuracy"] == pytest.approx(0.5)
    assert out["mean_per_class_accuracy"] == pytest.approx((0.5 + 0 + 0) / 3)  # classes with items only
    assert table["c0"] == {"accuracy": 0.5, "support": 2} and table["c3"] == {"accuracy": None, "support": 0}
    assert confusion[2, 0] == 1 and confusion[0, 6] == 1 and confusion.sum() == 4
    ml, per_class = score_multi_label(scores[:, :2], np.array([[1, 0], [0, 1], [1, 0], [0, 0]]), names[:2])
    assert per_class["c1"]["ap"] == pytest.approx(M.average_precision(scores[:, 1], np.array([0, 1, 0, 0])))
    assert ml["classes_with_positives"] == 2
    assert per_class["c0"]["support"] == 2 and per_class["c1"]["support"] == 1  # positives per class
    ap0 = M.average_precision(scores[:, 0], np.array([1, 0, 1, 0]))
    assert ml["mAP"] == pytest.approx((ap0 + per_class["c1"]["ap"]) / 2)
