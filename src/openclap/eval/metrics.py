"""Evaluation metrics: classification accuracy, multi-label mAP, and text/audio retrieval.

Pure numpy/torch, no model code. Conventions:

* Accuracies are fractions in [0, 1], never percentages.
* ``confusion_matrix[i, j]`` counts items whose true class is ``i`` and predicted class is ``j``.
* Average precision (AP) follows scikit-learn's ``average_precision_score``: items with equal scores
  form one threshold (a tie is neither rewarded nor punished by the input order), and
  ``AP = sum_n (R_n - R_{n-1}) P_n`` over the distinct thresholds. mAP is the unweighted mean over
  classes **that have at least one positive**; classes without positives are undefined and skipped
  (their count is returned so a report can say so).
* Retrieval ties are broken **pessimistically**: an item tied in score with the relevant one is
  ranked above it. A model whose similarities are all equal therefore scores R@k = k/N, not 1.
  With several relevant items (audio-to-text, five captions per clip) ties *among relevant
  items* are ordered by index, which changes no metric.
* Retrieval is computed in query chunks, so the full (queries x gallery) similarity matrix never
  exists in memory; ``chunk_size`` only changes speed and memory, never the numbers.

Retrieval protocol (AudioCaps / Clotho, as in the paper): each caption belongs to one clip.
Text-to-audio: each caption is a query over all clips; its one relevant clip is its own.
Audio-to-text: each clip is a query over all captions; every caption of the clip is relevant and
the query succeeds at ``k`` if *any* of them is in the top ``k``.

* ``R@k`` = fraction of queries whose first relevant item has rank <= k.
* ``mAP@k`` = mean over queries of ``AP@k = (1 / min(R, k)) * sum_{i <= k} P@i * rel_i`` where ``R`` is
  the number of relevant items. With one relevant item (text-to-audio) this is ``1 / rank`` if
  rank <= k else 0, the definition used for the paper's numbers.
* ``MRR@k`` = mean of ``1 / (rank of the first relevant item)`` (0 beyond k). laion_clap reports
  this quantity under the name "audio-to-text mAP@10"; we report it under its own name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = [
    "RetrievalResult",
    "accuracy",
    "average_precision",
    "confusion_matrix",
    "mean_average_precision",
    "per_class_accuracy",
    "ranks_of_relevant",
    "retrieval_metrics",
    "retrieval_metrics_from_similarity",
    "retrieval_scores_from_ranks",
]

DEFAULT_KS = (1, 5, 10)
# Elements of one similarity chunk: 2**24 float32 = 64 MiB, whatever the gallery size.
DEFAULT_CHUNK_ELEMENTS = 1 << 24


# ------------------------------------------------------------------------------------ helpers
def _int_array(values: Sequence[int] | np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class indices, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _check_pair(pred: np.ndarray, target: np.ndarray) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"predictions and targets differ in length: {pred.shape[0]} vs {target.shape[0]}")
    if pred.size == 0:
        raise ValueError("no predictions given; need at least one item to compute a metric")


# ------------------------------------------------------------------------- single-label metrics
def accuracy(predictions: Sequence[int] | np.ndarray, targets: Sequence[int] | np.ndarray) -> float:
    """Fraction of items whose predicted class index equals the target index."""
    pred, target = _int_array(predictions, "predictions"), _int_array(targets, "targets")
    _check_pair(pred, target)
    return float(np.mean(pred == target))


def confusion_matrix(
    predictions: Sequence[int] | np.ndarray, targets: Sequence[int] | np.ndarray, num_classes: int
) -> np.ndarray:
    """(C, C) int64 counts: row = true class, column = predicted class."""
    pred, target = _int_array(predictions, "predictions"), _int_array(targets, "targets")
    _check_pair(pred, target)
    for name, arr in (("predictions", pred), ("targets", target)):
        if arr.min() < 0 or arr.max() >= num_classes:
            raise ValueError(f"{name} must lie in [0, {num_classes}), got range [{arr.min()}, {arr.max()}]")
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (target, pred), 1)
    return matrix


def per_class_accuracy(
    predictions: Sequence[int] | np.ndarray, targets: Sequence[int] | np.ndarray, num_classes: int
) -> np.ndarray:
    """(C,) recall of each class (correct / items of that class); NaN for a class with no items."""
    matrix = confusion_matrix(predictions, targets, num_classes)
    support = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(matrix) / np.maximum(support, 1), np.nan)


# -------------------------------------------------------------------------- multi-label metrics
def average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """AP of one class: ``scores`` (N,) real, ``targets`` (N,) 0/1; NaN when there is no positive.

    Equal scores form one threshold, exactly as scikit-learn's ``average_precision_score``.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(targets).ravel().astype(bool)
    if s.shape != y.shape:
        raise ValueError(f"scores and targets differ in length: {s.shape[0]} vs {y.shape[0]}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or inf; check the embeddings that produced them")
    positives = int(y.sum())
    if positives == 0:
        return math.nan
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    tps = np.cumsum(y)
    # Last index of each run of equal scores: the thresholds.
    last = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]
    tp = tps[last].astype(np.float64)
    precision = tp / (last + 1)
    recall = tp / positives
    recall_gain = np.diff(np.r_[0.0, recall])
    return float(np.sum(recall_gain * precision))


def mean_average_precision(scores: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
    """(mAP over classes with a positive, per-class AP (C,) with NaN for classes without one).

    ``scores`` and ``targets`` are (N, C); ``targets`` is a 0/1 multi-hot matrix.
    """
    s, y = np.asarray(scores), np.asarray(targets)
    if s.ndim != 2 or s.shape != y.shape:
        raise ValueError(f"scores and targets must both be (N, C), got {s.shape} and {y.shape}")
    per_class = np.array([average_precision(s[:, c], y[:, c]) for c in range(s.shape[1])])
    valid = ~np.isnan(per_class)
    if not valid.any():
        raise ValueError("no class has a positive item; mAP is undefined (check the labels)")
    return float(per_class[valid].mean()), per_class


# ------------------------------------------------------------------------------------ retrieval
def _relevance_matrix(relevant: Sequence[Sequence[int]], gallery_size: int) -> torch.Tensor:
    """(Q, Rmax) int64 gallery indices, padded with -1, each row sorted ascending."""
    width = max((len(r) for r in relevant), default=0)
    if width == 0:
        raise ValueError("every query needs at least one relevant gallery item")
    out = torch.full((len(relevant), width), -1, dtype=torch.int64)
    for q, items in enumerate(relevant):
        if len(items) == 0:
            raise ValueError(f"query {q} has no relevant gallery item")
        idx = sorted({int(i) for i in items})
        if idx[0] < 0 or idx[-1] >= gallery_size:
            raise ValueError(
                f"query {q} names gallery item {idx[-1] if idx[-1] >= 0 else idx[0]} "
                f"outside [0, {gallery_size})"
            )
        out[q, : len(idx)] = torch.tensor(idx)
    return out


def ranks_of_relevant(scores: torch.Tensor, relevant: torch.Tensor) -> torch.Tensor:
    """1-based ranks (Q, Rmax) of each relevant item in each row of ``scores`` (Q, G); +inf for padding.

    Pessimistic ties: every *irrelevant* item with a score >= the relevant one's is ranked above it;
    relevant items tied with each other are ordered by gallery index.
    """
    if not torch.isfinite(scores.sum()):  # one NaN/inf makes the sum non-finite; far cheaper than isfinite()
        raise ValueError("similarities contain NaN or inf; check the embeddings that produced them")
    relevant = relevant.to(scores.device)
    valid = relevant >= 0
    rel_scores = torch.gather(scores, 1, relevant.clamp(min=0))  # (Q, R)
    position = torch.arange(relevant.shape[1], device=scores.device)
    ranks = torch.empty(relevant.shape, dtype=torch.float64, device=scores.device)
    for j in range(relevant.shape[1]):
        s_j = rel_scores[:, j : j + 1]  # (Q, 1)
        count_ge = (scores >= s_j).sum(
            dim=1, dtype=torch.int32
        )  # all gallery items scoring >= s_j, itself included
        # Relevant items at position >= j (index order) that tie with s_j are not placed above it.
        later_tied = ((rel_scores == s_j) & valid & (position >= j)).sum(dim=1)
        ranks[:, j] = (count_ge - later_tied + 1).double()
    ranks[~valid] = math.inf
    return ranks


def retrieval_scores_from_ranks(ranks: torch.Tensor, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """R@k, mAP@k and MRR@k (k = max(ks)) from (Q, Rmax) relevant-item ranks (inf = padding)."""
    ranks = ranks.double()
    first = ranks.min(dim=1).values  # rank of the first relevant item
    n_rel = torch.isfinite(ranks).sum(dim=1).double()
    out: dict[str, float] = {}
    for k in ks:
        out[f"R@{k}"] = float((first <= k).double().mean())
    k_map = max(ks)
    sorted_ranks = torch.sort(ranks, dim=1).values  # ascending; inf padding last
    position = torch.arange(1, ranks.shape[1] + 1, dtype=torch.float64).expand_as(sorted_ranks)
    hit = sorted_ranks <= k_map
    precision_at_hit = torch.where(hit, position / sorted_ranks, torch.zeros_like(sorted_ranks))
    ap = precision_at_hit.sum(dim=1) / torch.clamp(n_rel, max=k_map)
    out[f"mAP@{k_map}"] = float(ap.mean())
    out[f"MRR@{k_map}"] = float(torch.where(first <= k_map, 1.0 / first, torch.zeros_like(first)).mean())
    out["median_rank"] = float(first.median())
    out["mean_rank"] = float(first.mean())
    return out


def _ranks_chunked(
    rows: Callable[[int, int], torch.Tensor],
    num_queries: int,
    gallery_size: int,
    relevant: torch.Tensor,
    chunk_size: int | None,
) -> torch.Tensor:
    if chunk_size is None:
        chunk_size = max(1, DEFAULT_CHUNK_ELEMENTS // max(1, gallery_size))
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    parts = []
    for start in range(0, num_queries, chunk_size):
        stop = min(num_queries, start + chunk_size)
        parts.append(ranks_of_relevant(rows(start, stop), relevant[start:stop]).cpu())
    return torch.cat(parts)


@dataclass
class RetrievalResult:
    """Both directions of a retrieval evaluation; each dict maps 'R@1', 'mAP@10', ... to a fraction."""

    text_to_audio: dict[str, float]
    audio_to_text: dict[str, float]
    num_audio: int
    num_text: int
    text_to_audio_ranks: np.ndarray = field(repr=False)  # (M,) rank of each caption's clip
    audio_to_text_ranks: np.ndarray = field(repr=False)  # (N,) rank of each clip's first caption

    def as_dict(self) -> dict[str, object]:
        """JSON-ready metrics (ranks left out)."""
        return {
            "text_to_audio": self.text_to_audio,
            "audio_to_text": self.audio_to_text,
            "num_audio": self.num_audio,
            "num_text": self.num_text,
        }


def _captions_of(text_to_audio: np.ndarray, num_audio: int) -> list[list[int]]:
    captions: list[list[int]] = [[] for _ in range(num_audio)]
    for t, a in enumerate(text_to_audio):
        captions[int(a)].append(t)
    empty = [a for a, c in enumerate(captions) if not c]
    if empty:
        raise ValueError(
            f"{len(empty)} audio item(s) have no caption (first: index {empty[0]}); "
            "drop them before evaluating retrieval"
        )
    return captions


def _retrieval(
    t2a_rows: Callable[[int, int], torch.Tensor],
    a2t_rows: Callable[[int, int], torch.Tensor],
    num_audio: int,
    num_text: int,
    text_to_audio: Sequence[int] | np.ndarray,
    ks: Sequence[int],
    chunk_size: int | None,
) -> RetrievalResult:
    owner = _int_array(text_to_audio, "text_to_audio")
    if owner.shape[0] != num_text:
        raise ValueError(f"text_to_audio has {owner.shape[0]} entries but there are {num_text} texts")
    if num_text and (owner.min() < 0 or owner.max() >= num_audio):
        raise ValueError(f"text_to_audio must index audio items in [0, {num_audio})")
    t2a_rel = torch.from_numpy(owner).unsqueeze(1)
    a2t_rel = _relevance_matrix(_captions_of(owner, num_audio), num_text)
    t2a_ranks = _ranks_chunked(t2a_rows, num_text, num_audio, t2a_rel, chunk_size)
    a2t_ranks = _ranks_chunked(a2t_rows, num_audio, num_text, a2t_rel, chunk_size)
    return RetrievalResult(
        text_to_audio=retrieval_scores_from_ranks(t2a_ranks, ks),
        audio_to_text=retrieval_scores_from_ranks(a2t_ranks, ks),
        num_audio=num_audio,
        num_text=num_text,
        text_to_audio_ranks=t2a_ranks[:, 0].numpy(),
        audio_to_text_ranks=a2t_ranks.min(dim=1).values.numpy(),
    )


def retrieval_metrics(
    audio_embeds: np.ndarray | torch.Tensor,
    text_embeds: np.ndarray | torch.Tensor,
    text_to_audio: Sequence[int] | np.ndarray,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    chunk_size: int | None = None,
    device: str | torch.device = "cpu",
) -> RetrievalResult:
    """Text-to-audio and audio-to-text metrics from (N, D) audio and (M, D) text embeddings.

    ``text_to_audio[m]`` is the index of the clip that caption ``m`` describes. Similarity is the dot
    product (cosine for L2-normalised embeddings), computed ``chunk_size`` query rows at a time
    (default: as many rows as fit 2**24 similarities).
    """
    a = torch.as_tensor(np.asarray(audio_embeds, dtype=np.float32)).to(device)
    t = torch.as_tensor(np.asarray(text_embeds, dtype=np.float32)).to(device)
    if a.ndim != 2 or t.ndim != 2 or a.shape[1] != t.shape[1]:
        raise ValueError(
            f"need (N, D) audio and (M, D) text embeddings with equal D, got {tuple(a.shape)} "
            f"and {tuple(t.shape)}"
        )
    return _retrieval(
        lambda i, j: t[i:j] @ a.T,
        lambda i, j: a[i:j] @ t.T,
        a.shape[0],
        t.shape[0],
        text_to_audio,
        ks,
        chunk_size,
    )


def retrieval_metrics_from_similarity(
    similarity: np.ndarray | torch.Tensor,
    text_to_audio: Sequence[int] | np.ndarray,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    chunk_size: int | None = None,
) -> RetrievalResult:
    """The same metrics from a precomputed (N audio, M text) similarity matrix."""
    sim = torch.as_tensor(np.asarray(similarity, dtype=np.float64))
    if sim.ndim != 2:
        raise ValueError(f"similarity must be (N audio, M text), got shape {tuple(sim.shape)}")
    return _retrieval(
        lambda i, j: sim[:, i:j].T,
        lambda i, j: sim[i:j],
        sim.shape[0],
        sim.shape[1],
        text_to_audio,
        ks,
        chunk_size,
    )
