"""Task data: manifest rows -> audio paths + encoded targets, for single-label, multi-label and regression.

Targets are encoded once, in the main process, as tensors indexed like the task's rows:

* ``single_label``: class indices ``(N,)`` (int64) into ``classes`` (sorted training values unless the
  spec fixes them);
* ``multi_label``: a 0/1 matrix ``(N, C)`` (float32); each target column may hold several labels separated
  by the spec's ``separator`` (``"dog; bark"``), and several columns are pooled;
* ``regression``: ``(N,)`` float32 values ``(value - offset) / scale`` (offset/scale: given, or the training
  mean and std when ``normalize``, else 0 and 1).

Rows with an empty target are left out of that task (and counted in the log).
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from openclap_train.config import ManifestSpec, TrainConfigError
from openclap_train.data import _read_rows
from openclap_train.multitask.config import TaskSpec

logger = logging.getLogger(__name__)


def parse_multi_label(value: str | None, separator: str = ";") -> list[str]:
    """Labels of one multi-label cell: split on ``separator``, strip blanks, drop empties, keep first order."""
    if value is None:
        return []
    labels = [part.strip() for part in str(value).split(separator)]
    return list(dict.fromkeys(lab for lab in labels if lab))


def read_task_rows(spec: ManifestSpec) -> list[tuple[str, dict[str, Any]]]:
    """(absolute audio path, row) of a CSV/JSONL manifest after the spec's split/include/exclude/max_items filters."""
    path = Path(spec.path)
    if not path.is_file():
        raise FileNotFoundError(
            f"task manifest {path} not found; give a CSV or JSONL file with a path column "
            "and the target column(s)"
        )
    rows = _read_rows(path)
    if rows and "path" not in rows[0]:
        raise ValueError(f"manifest {path} has no 'path' column (columns: {sorted(rows[0])})")
    out = []
    for row in rows:
        if spec.split is not None and row.get("split") != spec.split:
            continue
        if any(str(row.get(col)) not in set(map(str, vals)) for col, vals in spec.include.items()):
            continue
        if any(str(row.get(col)) in set(map(str, vals)) for col, vals in spec.exclude.items()):
            continue
        audio = Path(row["path"])
        out.append((str(audio if audio.is_absolute() else path.parent / audio), row))
    if spec.max_items is not None:
        out = out[: spec.max_items]
    if not out:
        raise ValueError(
            f"manifest {path} has no rows left after the filters (split={spec.split!r}, "
            f"include={spec.include}, exclude={spec.exclude})"
        )
    return out


def holdout_fraction(path: str) -> float:
    """A stable number in [0, 1) from an audio file name (tasks sharing a manifest hold out the same clips)."""
    return int.from_bytes(hashlib.sha1(Path(path).name.encode()).digest()[:8], "big") / 2**64


@dataclass
class TaskData:
    """One task ready to train: paths, encoded targets (train and validation), classes or normalisation."""

    spec: TaskSpec
    paths: list[str]
    targets: torch.Tensor
    val_paths: list[str] = field(default_factory=list)
    val_targets: torch.Tensor | None = None
    classes: list[str] = field(default_factory=list)
    offset: float = 0.0
    scale: float = 1.0

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def kind(self) -> str:
        return self.spec.type

    @property
    def num_outputs(self) -> int:
        """Width of the task's head: number of classes, or 1 for regression."""
        return 1 if self.kind == "regression" else len(self.classes)

    def __len__(self) -> int:
        return len(self.paths)

    def info(self) -> dict[str, Any]:
        """What ``tasks.json`` records about the task (enough to decode a head's outputs)."""
        out: dict[str, Any] = {
            "name": self.name,
            "type": self.kind,
            "target": list(self.spec.target),
            "weight": self.spec.weight,
            "train_rows": len(self.paths),
            "val_rows": len(self.val_paths),
            "manifest": self.spec.manifest.path,
        }
        if self.kind == "regression":
            out.update(offset=self.offset, scale=self.scale)
        else:
            out["classes"] = list(self.classes)
        return out


def _cell(row: dict[str, Any], column: str, spec: TaskSpec, manifest: str) -> str:
    if column not in row:
        raise TrainConfigError(
            f"task {spec.name!r}: manifest {manifest} has no column {column!r} "
            f"(columns: {sorted(row)}); fix the task's target"
        )
    value = row[column]
    return "" if value is None else str(value).strip()


def _raw_targets(
    rows: list[tuple[str, dict[str, Any]]], spec: TaskSpec, manifest: str
) -> tuple[list[str], list[Any]]:
    """Keep rows with a non-empty target; return their paths and raw target values."""
    paths, values = [], []
    for path, row in rows:
        cells = [_cell(row, c, spec, manifest) for c in spec.target]
        if spec.type == "multi_label":
            labels = [lab for cell in cells for lab in parse_multi_label(cell, spec.separator)]
            if not labels:
                continue
            values.append(list(dict.fromkeys(labels)))
        else:
            if not cells[0]:
                continue
            values.append(cells[0])
        paths.append(path)
    return paths, values


def _encode(
    spec: TaskSpec, values: list[Any], classes: list[str], offset: float, scale: float, where: str
) -> torch.Tensor:
    if spec.type == "single_label":
        index = {c: i for i, c in enumerate(classes)}
        unknown = sorted({v for v in values if v not in index})
        if unknown:
            raise TrainConfigError(
                f"task {spec.name!r} ({where}): values {unknown[:5]} are not in its classes; "
                "add them to the task's classes or filter those rows out"
            )
        return torch.tensor([index[v] for v in values], dtype=torch.long)
    if spec.type == "multi_label":
        index = {c: i for i, c in enumerate(classes)}
        out = torch.zeros(len(values), len(classes))
        for r, labels in enumerate(values):
            for lab in labels:
                if lab not in index:
                    raise TrainConfigError(
                        f"task {spec.name!r} ({where}): label {lab!r} is not in its classes"
                    )
                out[r, index[lab]] = 1.0
        return out
    floats = []
    for v in values:
        try:
            floats.append(float(v))
        except ValueError:
            raise TrainConfigError(
                f"task {spec.name!r} ({where}): regression target {v!r} is not a number"
            ) from None
    return (torch.tensor(floats, dtype=torch.float64) - offset).div(scale).float()


def load_task(spec: TaskSpec) -> TaskData:
    """Read a task's manifest(s), split off validation rows, and encode its targets."""
    manifest = spec.manifest.path
    rows = read_task_rows(spec.manifest)
    if spec.holdout:
        val_rows = [r for r in rows if holdout_fraction(r[0]) < spec.holdout]
        rows = [r for r in rows if holdout_fraction(r[0]) >= spec.holdout]
    elif spec.val_manifest is not None:
        val_rows = read_task_rows(spec.val_manifest)
    else:
        val_rows = []
    paths, values = _raw_targets(rows, spec, manifest)
    dropped = len(rows) - len(paths)
    if dropped:
        logger.info(
            "task %s: %d of %d training rows have an empty %s and are left out",
            spec.name,
            dropped,
            len(rows),
            "/".join(spec.target),
        )
    if not paths:
        raise TrainConfigError(
            f"task {spec.name!r}: no training rows with a non-empty {spec.target} in {manifest}"
        )
    val_paths, val_values = _raw_targets(
        val_rows, spec, spec.val_manifest.path if spec.val_manifest else manifest
    )

    classes: list[str] = []
    offset, scale = 0.0, 1.0
    if spec.type == "single_label":
        classes = list(spec.classes) if spec.classes else sorted(set(values))
    elif spec.type == "multi_label":
        classes = list(spec.classes) if spec.classes else sorted({lab for labels in values for lab in labels})
    else:
        if spec.scale is not None or spec.offset is not None:
            offset, scale = spec.offset or 0.0, spec.scale if spec.scale is not None else 1.0
        elif spec.normalize:
            floats = _encode(spec, values, [], 0.0, 1.0, "train").double()
            offset = float(floats.mean())
            std = float(floats.std(unbiased=False)) if len(floats) > 1 else 0.0
            scale = std if std > 0 and math.isfinite(std) else 1.0
    if spec.type == "single_label" and len(classes) < 2:
        raise TrainConfigError(
            f"task {spec.name!r}: a single_label task needs at least 2 classes, got {classes}"
        )
    if spec.type == "single_label" and val_values:  # validation rows of unseen classes cannot be scored
        known = set(classes)
        keep = [i for i, v in enumerate(val_values) if v in known]
        if len(keep) < len(val_values):
            logger.warning(
                "task %s: %d validation rows have classes unseen in training and are left out",
                spec.name,
                len(val_values) - len(keep),
            )
        val_paths, val_values = [val_paths[i] for i in keep], [val_values[i] for i in keep]
    if spec.type == "multi_label" and val_values:
        known = set(classes)
        val_values = [[lab for lab in labels if lab in known] for labels in val_values]
    targets = _encode(spec, values, classes, offset, scale, "train")
    val_targets = _encode(spec, val_values, classes, offset, scale, "validation") if val_values else None
    task = TaskData(
        spec, paths, targets, val_paths if val_values else [], val_targets, classes, offset, scale
    )
    logger.info(
        "task %s (%s): %d training rows, %d validation rows, %s",
        spec.name,
        spec.type,
        len(paths),
        len(task.val_paths),
        f"{len(classes)} classes" if classes else f"offset {offset:.3g} scale {scale:.3g}",
    )
    return task


def load_tasks(specs: list[TaskSpec]) -> list[TaskData]:
    """``load_task`` for every spec, in order."""
    return [load_task(spec) for spec in specs]
