"""Linear probe: logistic regression on frozen audio embeddings.

Protocol, in order of preference:

1. a train split and a test split (FSD50K dev -> eval, Speech Commands train -> test, ...): one run;
2. the dataset's official folds (ESC-50: 5, UrbanSound8K: 10, TUT2017 development: 4): train on all
   folds but one, test on that one, for every fold;
3. no official folds: stratified k folds (default 5) drawn with a fixed seed; the report says so.

Results are the mean and (population) standard deviation over folds of accuracy (single-label) or
mAP (multi-label).

The classifier is multinomial (softmax) logistic regression, or one-vs-rest sigmoid for multi-label,
trained full-batch with L-BFGS on features standardised with the training fold's mean and std, with
an L2 penalty ``weight_decay * ||W||^2 / 2``. It starts from zero and the problem is convex, so the
result does not depend on a seed. scikit-learn is not needed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from openclap.eval import metrics
from openclap.eval.cache import EmbeddingCache, embed_dataset
from openclap.eval.datasets.base import MULTI_LABEL, SINGLE_LABEL, EvalDataset
from openclap.eval.zero_shot import multi_hot


@dataclass
class ProbeConfig:
    """Hyper-parameters of the logistic-regression probe."""

    weight_decay: float = 1e-3
    max_iter: int = 100
    num_folds: int = 5  # only when the dataset has no official folds
    seed: int = 0  # only for drawing those folds
    device: str = "cpu"


SMALL_PROBLEM = 2_000_000  # features x items below which one thread is faster (no thread hand-offs)


@contextmanager
def _threads_for(size: int) -> Iterator[None]:
    """Run small problems on one intra-op thread: L-BFGS makes many tiny calls that threads only slow down."""
    previous = torch.get_num_threads()
    if size < SMALL_PROBLEM and previous > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def train_logistic(
    x: np.ndarray, y: np.ndarray, num_classes: int, multi_label: bool, config: ProbeConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fit (W (D, C), b (C,)) and the standardisation (mean, std) on (N, D) features and labels.

    ``y`` is (N,) class indices, or an (N, C) 0/1 matrix when ``multi_label``.
    """
    device = torch.device(config.device)
    features = torch.as_tensor(x, dtype=torch.float64, device=device)
    mean = features.mean(dim=0)
    std = features.std(dim=0, unbiased=False).clamp(min=1e-6)
    features = (features - mean) / std
    targets = torch.as_tensor(y, device=device)
    targets = targets.double() if multi_label else targets.long()
    weight = torch.zeros(
        features.shape[1], num_classes, dtype=torch.float64, device=device, requires_grad=True
    )
    bias = torch.zeros(num_classes, dtype=torch.float64, device=device, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=config.max_iter,
        tolerance_grad=1e-7,
        tolerance_change=1e-10,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        logits = features @ weight + bias
        if multi_label:
            loss = F.binary_cross_entropy_with_logits(logits, targets)
        else:
            loss = F.cross_entropy(logits, targets)
        loss = loss + 0.5 * config.weight_decay * (weight**2).sum()
        loss.backward()
        return loss

    with _threads_for(features.numel()):
        optimizer.step(closure)
    return weight.detach(), bias.detach(), mean, std


def predict_scores(
    x: np.ndarray, params: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
) -> np.ndarray:
    """(N, C) logits of a fitted probe."""
    weight, bias, mean, std = params
    features = (torch.as_tensor(x, dtype=torch.float64, device=weight.device) - mean) / std
    return (features @ weight + bias).cpu().numpy()


def stratified_folds(labels: Sequence[int], num_folds: int, seed: int) -> list[str]:
    """Deterministic fold names ('1'..'k') spreading each class evenly over the folds."""
    if num_folds < 2:
        raise ValueError(f"num_folds must be >= 2, got {num_folds}")
    rng = np.random.default_rng(seed)
    folds = [""] * len(labels)
    labels = np.asarray(labels)
    offset = 0
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        for pos, i in enumerate(idx):
            folds[i] = str((pos + offset) % num_folds + 1)
        offset += len(idx)
    return folds


@dataclass
class LinearProbeResult:
    """Per-fold scores and their mean and std (fractions)."""

    dataset: str
    task: str
    metric: str  # "accuracy" or "mAP"
    protocol: str  # "train/test splits", "official folds" or "stratified k folds (seed s)"
    fold_names: list[str]
    fold_scores: list[float]
    num_items: int
    num_evaluated: int
    excluded: dict[str, object]
    timing: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    split: str | None = None  # the training split, when the probe trains on one split and tests on another

    @property
    def mean(self) -> float:
        return float(np.mean(self.fold_scores))

    @property
    def std(self) -> float:
        return float(np.std(self.fold_scores))

    @property
    def metrics(self) -> dict[str, float]:
        """Flat view: '<metric>' (the mean) and '<metric>_std'."""
        return {self.metric: self.mean, f"{self.metric}_std": self.std}

    def as_dict(self) -> dict[str, object]:
        """JSON-ready result; field names are documented in docs/evaluation.md."""
        return {
            "kind": "linear-probe",
            "dataset": self.dataset,
            "task": self.task,
            "split": self.split,
            "num_items": self.num_items,
            "num_evaluated": self.num_evaluated,
            "excluded": self.excluded,
            "metrics": self.metrics,
            "protocol": self.protocol,
            "folds": [{"fold": f, self.metric: s} for f, s in zip(self.fold_names, self.fold_scores)],
            "timing": self.timing,
            "notes": self.notes,
        }


def _targets(dataset: EvalDataset, indices: Sequence[int]) -> np.ndarray:
    items = [dataset.items[i] for i in indices]
    if dataset.task == MULTI_LABEL:
        return multi_hot([it.labels for it in items], len(dataset.classes))
    return np.array([it.labels[0] for it in items])


def _score(dataset: EvalDataset, scores: np.ndarray, targets: np.ndarray) -> float:
    if dataset.task == MULTI_LABEL:
        return metrics.mean_average_precision(scores, targets)[0]
    return metrics.accuracy(scores.argmax(axis=1), targets)


def probe_folds(
    x: np.ndarray, targets: np.ndarray, folds: Sequence[str], task: str, num_classes: int, config: ProbeConfig
) -> tuple[list[str], list[float]]:
    """Leave-one-fold-out scores on precomputed features (the model-free core of ``linear_probe``)."""
    names = sorted(set(folds), key=lambda f: (len(f), f))
    if len(names) < 2:
        raise ValueError(
            f"the linear probe needs at least 2 folds to hold one out, got {names}; "
            "give a train and a test split instead (--train-split/--test-split)"
        )
    fold_arr = np.asarray(folds)
    scores = []
    for name in names:
        test = fold_arr == name
        params = train_logistic(x[~test], targets[~test], num_classes, task == MULTI_LABEL, config)
        out = predict_scores(x[test], params)
        if task == MULTI_LABEL:
            scores.append(metrics.mean_average_precision(out, targets[test])[0])
        else:
            scores.append(metrics.accuracy(out.argmax(axis=1), targets[test]))
    return names, scores


def linear_probe(
    pipeline: object,
    dataset: EvalDataset,
    *,
    test_dataset: EvalDataset | None = None,
    config: ProbeConfig | None = None,
    cache: EmbeddingCache | None = None,
    batch_size: int = 8,
    progress: bool = False,
) -> LinearProbeResult:
    """Linear-probe evaluation of ``pipeline`` on ``dataset`` (train) and ``test_dataset`` or folds."""
    config = config or ProbeConfig()
    if dataset.task not in (SINGLE_LABEL, MULTI_LABEL):
        raise ValueError(f"{dataset.name} is a {dataset.task} dataset; the linear probe needs class labels")
    start = time.perf_counter()
    train = embed_dataset(pipeline, dataset, cache=cache, batch_size=batch_size, progress=progress)
    notes = list(dataset.notes)
    num_classes = len(dataset.classes)
    y_train = _targets(dataset, train.ok)
    excluded = train.excluded_report()
    num_items, num_evaluated = len(dataset), len(train.ok)
    if test_dataset is not None:
        if test_dataset.classes != dataset.classes:
            raise ValueError(f"train and test splits of {dataset.name} have different class lists")
        test = embed_dataset(
            pipeline,
            test_dataset,
            cache=cache,
            batch_size=batch_size,
            progress=progress,
            what=f"{test_dataset.name} ({test_dataset.split})",
        )
        params = train_logistic(train.embeddings, y_train, num_classes, dataset.task == MULTI_LABEL, config)
        score = _score(dataset, predict_scores(test.embeddings, params), _targets(test_dataset, test.ok))
        protocol = f"train on split {dataset.split}, test on split {test_dataset.split}"
        fold_names, fold_scores = [str(test_dataset.split)], [score]
        test_excluded = test.excluded_report()
        excluded = {k: excluded[k] + test_excluded[k] for k in ("count", "missing", "unreadable")} | {
            "files": list(excluded["files"]) + list(test_excluded["files"])
        }  # type: ignore[operator]
        num_items += len(test_dataset)
        num_evaluated += len(test.ok)
    else:
        items = [dataset.items[i] for i in train.ok]
        if dataset.folds and all(it.fold is not None for it in items):
            folds = [str(it.fold) for it in items]
            protocol = f"official folds ({len(dataset.folds)})"
        else:
            if dataset.task == MULTI_LABEL:
                rng = np.random.default_rng(config.seed)
                folds = [str(f + 1) for f in rng.permutation(len(items)) % config.num_folds]
            else:
                folds = stratified_folds(y_train, config.num_folds, config.seed)
            protocol = (
                f"stratified {config.num_folds} folds (seed {config.seed}; the dataset has no official folds)"
            )
        fold_names, fold_scores = probe_folds(
            train.embeddings, y_train, folds, dataset.task, num_classes, config
        )
    seconds = time.perf_counter() - start
    return LinearProbeResult(
        dataset=dataset.name,
        task=dataset.task,
        metric="mAP" if dataset.task == MULTI_LABEL else "accuracy",
        protocol=protocol,
        fold_names=fold_names,
        fold_scores=[float(s) for s in fold_scores],
        num_items=num_items,
        num_evaluated=num_evaluated,
        excluded=excluded,
        timing={"seconds": seconds},
        notes=notes,
        split=dataset.split,
    )
