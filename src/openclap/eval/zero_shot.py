"""Zero-shot classification: score each clip against prompts built from the class names.

A class's text embedding is the mean of its prompts' L2-normalised embeddings (one per template),
normalised again (the CLIP prompt-ensembling recipe). Scores are cosine similarities; the logit scale
and softmax are monotonic and change no metric, so they are left out.

* single-label: prediction = argmax score (ties -> lowest class index); accuracy, top-5 accuracy,
  mean per-class accuracy, per-class accuracy, confusion matrix.
* multi-label: per-class average precision over clips (scikit-learn's AP); mAP over classes with
  at least one positive clip.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from openclap.eval import metrics
from openclap.eval.cache import EmbeddedFiles, EmbeddingCache, embed_dataset
from openclap.eval.datasets.base import MULTI_LABEL, SINGLE_LABEL, EvalDataset
from openclap.pipeline import DEFAULT_TEMPLATE, fill_template

logger = logging.getLogger(__name__)


def read_templates(path: str) -> list[str]:
    """Templates from a text file, one per line; blank lines and lines starting with '#' are ignored."""
    with open(path, encoding="utf-8") as f:
        templates = [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]
    if not templates:
        raise ValueError(f"template file {path} holds no template; write one per line, each with '{{}}'")
    check_templates(templates)
    return templates


def check_templates(templates: Sequence[str]) -> None:
    """Every template must contain exactly one '{}' where the class name goes."""
    if not templates:
        raise ValueError("need at least one template, e.g. 'this is the sound of {}'")
    for t in templates:
        if t.count("{}") != 1:
            raise ValueError(f"template {t!r} must contain '{{}}' exactly once, where the class name goes")


def class_text_embeddings(
    pipeline: object, class_names: Sequence[str], templates: Sequence[str]
) -> np.ndarray:
    """(C, D) class embeddings: per class, the renormalised mean over templates of prompt embeddings."""
    check_templates(templates)
    prompts = [fill_template(t, name) for name in class_names for t in templates]
    text = pipeline.embed_text(prompts)  # type: ignore[attr-defined]  # (C * T, D)
    text = text.reshape(len(class_names), len(templates), -1).mean(axis=1)
    return (text / np.linalg.norm(text, axis=1, keepdims=True)).astype(np.float32)


@dataclass
class ZeroShotResult:
    """Metrics (fractions), per-class numbers and bookkeeping of one zero-shot evaluation."""

    dataset: str
    task: str
    split: str | None
    classes: list[str]
    templates: list[str]
    num_items: int
    num_evaluated: int
    excluded: dict[str, object]
    metrics: dict[str, float]
    per_class: dict[str, dict[str, float | int | None]]
    confusion: np.ndarray | None = None  # (C, C) single-label only; rows = true class
    timing: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    scores: np.ndarray | None = field(default=None, repr=False)  # (K, C) cosine scores of evaluated clips
    targets: np.ndarray | None = field(default=None, repr=False)  # (K,) class indices, or (K, C) 0/1
    evaluated: np.ndarray | None = field(default=None, repr=False)  # (K,) dataset indices of those clips

    @property
    def predictions(self) -> np.ndarray | None:
        """(K,) predicted class index per evaluated clip (argmax score)."""
        return None if self.scores is None else np.argmax(self.scores, axis=1)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready result; field names are documented in docs/evaluation.md."""
        return {
            "kind": "zeroshot",
            "dataset": self.dataset,
            "task": self.task,
            "split": self.split,
            "num_items": self.num_items,
            "num_evaluated": self.num_evaluated,
            "excluded": self.excluded,
            "metrics": self.metrics,
            "classes": self.classes,
            "templates": self.templates,
            "per_class": self.per_class,
            "confusion_matrix": None if self.confusion is None else self.confusion.tolist(),
            "timing": self.timing,
            "notes": self.notes,
        }


def _nan_to_none(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


def score_single_label(
    scores: np.ndarray, targets: np.ndarray, class_names: Sequence[str]
) -> tuple[dict[str, float], dict[str, dict[str, float | int | None]], np.ndarray]:
    """Metrics, per-class numbers and confusion matrix from (N, C) scores and (N,) true class indices."""
    num_classes = scores.shape[1]
    pred = np.argmax(scores, axis=1)
    per_class = metrics.per_class_accuracy(pred, targets, num_classes)
    confusion = metrics.confusion_matrix(pred, targets, num_classes)
    out = {
        "accuracy": metrics.accuracy(pred, targets),
        "mean_per_class_accuracy": float(np.nanmean(per_class)),
    }
    if num_classes > 5:
        # Pessimistic ties as in retrieval: the true class must beat every class scoring >= it.
        true_score = scores[np.arange(len(targets)), targets]
        rank = (scores >= true_score[:, None]).sum(axis=1)
        out["top5_accuracy"] = float(np.mean(rank <= 5))
    support = confusion.sum(axis=1)
    table = {
        name: {"accuracy": _nan_to_none(per_class[c]), "support": int(support[c])}
        for c, name in enumerate(class_names)
    }
    return out, table, confusion


def score_multi_label(
    scores: np.ndarray, targets: np.ndarray, class_names: Sequence[str]
) -> tuple[dict[str, float], dict[str, dict[str, float | int | None]]]:
    """mAP and per-class AP from (N, C) scores and an (N, C) 0/1 target matrix."""
    value, per_class = metrics.mean_average_precision(scores, targets)
    support = targets.sum(axis=0)
    table = {
        name: {"ap": _nan_to_none(per_class[c]), "support": int(support[c])}
        for c, name in enumerate(class_names)
    }
    out = {"mAP": value, "classes_with_positives": int((~np.isnan(per_class)).sum())}
    return out, table


def multi_hot(label_lists: Sequence[Sequence[int]], num_classes: int) -> np.ndarray:
    """(N, C) int 0/1 matrix from per-item class-index lists."""
    out = np.zeros((len(label_lists), num_classes), dtype=np.int64)
    for i, labels in enumerate(label_lists):
        out[i, list(labels)] = 1
    return out


def zero_shot(
    pipeline: object,
    dataset: EvalDataset,
    templates: Sequence[str] = (DEFAULT_TEMPLATE,),
    *,
    cache: EmbeddingCache | None = None,
    batch_size: int = 8,
    progress: bool = False,
    embedded: EmbeddedFiles | None = None,
) -> ZeroShotResult:
    """Zero-shot evaluation of ``pipeline`` (a ``ClapPipeline``) on a classification dataset."""
    if dataset.task not in (SINGLE_LABEL, MULTI_LABEL):
        raise ValueError(
            f"{dataset.name} is a {dataset.task} dataset; zero-shot needs classes "
            "(use `openclap eval retrieval` for captions)"
        )
    templates = list(templates)
    check_templates(templates)
    start = time.perf_counter()
    embedded = embed_dataset(
        pipeline, dataset, embedded=embedded, cache=cache, batch_size=batch_size, progress=progress
    )
    text = class_text_embeddings(pipeline, dataset.class_names, templates)  # (C, D)
    scores = embedded.embeddings @ text.T  # (K, C)
    items = [dataset.items[i] for i in embedded.ok]
    confusion = None
    if dataset.task == SINGLE_LABEL:
        bad = [it.key for it in items if len(it.labels) != 1]
        if bad:
            raise ValueError(f"{dataset.name}: single-label items must have exactly one label; e.g. {bad[0]}")
        targets = np.array([it.labels[0] for it in items])
        result_metrics, per_class, confusion = score_single_label(scores, targets, dataset.class_names)
    else:
        targets = multi_hot([it.labels for it in items], len(dataset.classes))
        result_metrics, per_class = score_multi_label(scores, targets, dataset.class_names)
    seconds = time.perf_counter() - start
    timing = {
        "seconds": seconds,
        "embedding_seconds": embedded.seconds,
        "clips_per_second": len(dataset) / seconds if seconds > 0 else float("inf"),
        "cached": embedded.cached,
        "computed": embedded.computed,
    }
    return ZeroShotResult(
        dataset=dataset.name,
        task=dataset.task,
        split=dataset.split,
        classes=list(dataset.class_names),
        templates=templates,
        num_items=len(dataset),
        num_evaluated=len(embedded.ok),
        excluded=embedded.excluded_report(),
        metrics=result_metrics,
        per_class=per_class,
        confusion=confusion,
        timing=timing,
        notes=list(dataset.notes),
        scores=scores,
        targets=targets,
        evaluated=embedded.ok,
    )
