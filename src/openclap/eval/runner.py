"""Run one evaluation task (dataset loading, subset, protocol choice) for the CLI and suites."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from openclap.eval.cache import EmbeddingCache
from openclap.eval.datasets import DATASETS, EvalDataset, Manifest, get_adapter
from openclap.eval.linear_probe import ProbeConfig, linear_probe
from openclap.eval.retrieval import retrieval
from openclap.eval.suite import SuiteTask
from openclap.eval.zero_shot import zero_shot

logger = logging.getLogger(__name__)


def evenly_spaced(dataset: EvalDataset, limit: int | None) -> EvalDataset:
    """The first-to-last evenly spaced ``limit`` items (all when ``limit`` is None or large)."""
    if limit is None or limit >= len(dataset):
        return dataset
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    keep = np.unique(np.linspace(0, len(dataset) - 1, limit).round().astype(int))
    subset = dataset.subset(keep.tolist())
    subset.notes.append(f"evaluated on {len(subset)} evenly spaced items of {len(dataset)} (--limit)")
    return subset


def load_task_dataset(task: SuiteTask, split: str | None = None) -> EvalDataset:
    """The dataset a task names, in its split (``split`` overrides ``task.split``)."""
    split = task.split if split is None else split
    if task.dataset == "manifest":
        if task.manifest is None:
            raise ValueError("a manifest task needs a manifest file (--manifest FILE)")
        adapter = Manifest(task.label_column, task.label_separator, name=task.name)
        return adapter.load(task.manifest, split)
    if task.root is None:
        raise ValueError(f"dataset {task.dataset!r} needs its folder (--root PATH)")
    dataset = get_adapter(task.dataset).load(task.root, split)
    if task.name:
        dataset.name = task.name
    return dataset


def run_task(
    pipeline: Any,
    task: SuiteTask,
    *,
    cache: EmbeddingCache | None = None,
    batch_size: int = 8,
    progress: bool = False,
    device: str = "cpu",
) -> Any:
    """Run one zero-shot, retrieval or linear-probe task; returns its result object."""
    if task.eval == "zeroshot":
        dataset = evenly_spaced(load_task_dataset(task), task.limit)
        return zero_shot(
            pipeline, dataset, task.templates, cache=cache, batch_size=batch_size, progress=progress
        )
    if task.eval == "retrieval":
        dataset = evenly_spaced(load_task_dataset(task), task.limit)
        return retrieval(pipeline, dataset, cache=cache, batch_size=batch_size, progress=progress)
    if task.eval != "linear-probe":
        raise ValueError(f"unknown evaluation {task.eval!r}")
    config = ProbeConfig(weight_decay=task.weight_decay, num_folds=task.num_folds, device=device)
    train_split, test_split = task.train_split, task.test_split
    adapter_cls = DATASETS.get(task.dataset)
    if (
        train_split is None
        and test_split is None
        and task.split is None
        and adapter_cls
        and adapter_cls.probe_splits
    ):
        train_split, test_split = adapter_cls.probe_splits
    if (train_split is None) != (test_split is None):
        raise ValueError("give both --train-split and --test-split, or neither (then folds are used)")
    if train_split is not None:
        train = evenly_spaced(load_task_dataset(task, train_split), task.limit)
        test = evenly_spaced(load_task_dataset(task, test_split), task.limit)
        return linear_probe(
            pipeline,
            train,
            test_dataset=test,
            config=config,
            cache=cache,
            batch_size=batch_size,
            progress=progress,
        )
    dataset = evenly_spaced(load_task_dataset(task), task.limit)
    return linear_probe(
        pipeline, dataset, config=config, cache=cache, batch_size=batch_size, progress=progress
    )
