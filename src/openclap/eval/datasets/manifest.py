"""The generic manifest: a CSV or JSONL with a ``path`` column and ``label``, ``labels`` or ``caption``.

* ``label``: single-label classification (classes = sorted distinct labels of all rows, every split).
* ``labels``: multi-label; a CSV cell separates labels with ``label_separator`` (default ``,``, quote
  the cell), a JSONL value may also be a list.
* ``caption``: retrieval; several rows with the same path are several captions of one clip; a CSV may
  also have ``caption_1``, ``caption_2``, ... columns, a JSONL a ``captions`` list.
* Relative paths are relative to the manifest's folder.
* Optional ``split`` column (select rows with ``split=``) and ``fold`` column (linear-probe folds).
* ``EvalDataset.classes`` keep the labels as written; the prompts use ``clean_class_name`` (underscores
  to spaces, lower case) unless ``clean_names=False``.
"""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path
from typing import Any

from openclap.eval.datasets.base import (
    MULTI_LABEL,
    RETRIEVAL,
    SINGLE_LABEL,
    DatasetAdapter,
    EvalDataset,
    EvalItem,
    class_index,
    clean_class_name,
)

TASK_OF_COLUMN = {"label": SINGLE_LABEL, "labels": MULTI_LABEL, "caption": RETRIEVAL}


def read_manifest(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV (header) or JSONL (one object per line) manifest."""
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        rows = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(
                        f"{path}:{n}: not valid JSON ({exc.msg}); a JSONL manifest has one object per line"
                    ) from exc
                if not isinstance(row, dict):
                    raise ValueError(f"{path}:{n}: expected a JSON object, got {type(row).__name__}")
                rows.append(row)
        return rows
    with open(path, newline="", encoding="utf-8-sig") as f:
        return list(csv.DictReader(f))


class Manifest(DatasetAdapter):
    """Any dataset described by a manifest file (``root`` is the manifest file)."""

    name = "manifest"
    task = SINGLE_LABEL  # decided per manifest by the label column
    homepage = "(your own files)"
    layout = "manifest.csv or .jsonl with columns path + label | labels | caption [+ split] [+ fold]"

    def __init__(
        self,
        label_column: str | None = None,
        label_separator: str = ",",
        name: str | None = None,
        clean_names: bool = True,
    ) -> None:
        self.label_column = label_column
        self.clean_names = clean_names
        self.label_separator = label_separator
        self.display_name = name

    def _column(self, header: set[str], path: Path) -> str:
        if self.label_column is not None:
            if self.label_column not in header:
                raise ValueError(f"{path}: no column {self.label_column!r}; columns are {sorted(header)}")
            return self.label_column
        for column in ("label", "labels", "caption"):
            if column in header:
                return column
        raise ValueError(
            f"{path}: needs a 'label', 'labels' or 'caption' column (or --label-column); "
            f"columns are {sorted(header)}"
        )

    def _task(self, column: str) -> str:
        if column in TASK_OF_COLUMN:
            return TASK_OF_COLUMN[column]
        if column.startswith("caption"):
            return RETRIEVAL
        return MULTI_LABEL if column.endswith("labels") else SINGLE_LABEL

    def _split_labels(self, value: Any) -> list[str]:
        if isinstance(value, list):
            return [str(v).strip() for v in value if str(v).strip()]
        return [v.strip() for v in str(value).split(self.label_separator) if v.strip()]

    def _labels_of(self, value: Any, task: str) -> list[str]:
        if task == MULTI_LABEL:
            return self._split_labels(value)
        return [str(value).strip()] if value not in (None, "") else []

    def load(self, root: str | os.PathLike, split: str | None = None) -> EvalDataset:
        path = Path(root).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"manifest '{path}' not found; pass a CSV or JSONL file with a 'path' column"
            )
        rows = read_manifest(path)
        if not rows:
            raise ValueError(f"manifest '{path}' has no rows")
        header = set().union(*(r.keys() for r in rows))
        if "path" not in header:
            raise ValueError(f"{path}: needs a 'path' column; columns are {sorted(header)}")
        all_rows = rows  # the class list comes from every split, so train and test splits share it
        if split is not None and split != "all":
            if "split" not in header:
                raise ValueError(f"{path}: --split {split} given but the manifest has no 'split' column")
            rows = [r for r in rows if str(r.get("split", "")) == split]
            if not rows:
                raise ValueError(f"{path}: no rows with split == {split!r}")
        column = self._column(header, path)
        task = self._task(column)
        folder = path.parent

        def resolve(p: str) -> Path:
            file = Path(str(p)).expanduser()
            return file if file.is_absolute() else folder / file

        # 'data/esc10/manifest.csv' is named 'esc10'; 'test_set.csv' is named 'test_set'.
        name = self.display_name or (
            path.parent.name if path.stem == "manifest" and path.parent.name else path.stem
        )
        has_fold = "fold" in header
        if task == RETRIEVAL:
            extra = sorted((c for c in header if re.fullmatch(r"caption_\d+", c)), key=lambda c: int(c[8:]))
            captions: dict[str, list[str]] = {}
            for n, row in enumerate(rows, 2):
                if not str(row.get("path", "")).strip():
                    raise ValueError(f"{path}: row {n} has an empty path")
                texts = captions.setdefault(str(row["path"]), [])
                value = row.get(column)
                texts.extend(value if isinstance(value, list) else [value] if value else [])
                texts.extend(row[c] for c in extra if row.get(c))
                if isinstance(row.get("captions"), list):
                    texts.extend(row["captions"])
            items = [
                EvalItem(resolve(p), captions=tuple(str(t).strip() for t in texts if str(t).strip()), key=p)
                for p, texts in captions.items()
            ]
            empty = [i.key for i in items if not i.captions]
            if empty:
                raise ValueError(f"{path}: {len(empty)} clip(s) have no caption, e.g. {empty[0]}")
            return EvalDataset(name, task, folder, items, split=split)

        per_row = []
        for n, row in enumerate(rows, 2):
            if not str(row.get("path", "")).strip():
                raise ValueError(f"{path}: row {n} has an empty path")
            labels = self._labels_of(row.get(column), task)
            if not labels and task == SINGLE_LABEL:
                raise ValueError(f"{path}: row {n} ({row['path']}) has an empty {column!r}")
            per_row.append((row, labels))
        classes = sorted(
            {label for row in all_rows for label in self._labels_of(row.get(column), task)}
            | {label for _, labels in per_row for label in labels}
        )
        index = class_index(classes)
        items = [
            EvalItem(
                resolve(row["path"]),
                tuple(sorted({index[x] for x in labels})),
                fold=str(row["fold"]) if has_fold and row.get("fold") not in (None, "") else None,
                key=str(row["path"]),
            )
            for row, labels in per_row
        ]
        folds = (
            sorted({i.fold for i in items if i.fold is not None}, key=lambda f: (len(f), f))
            if has_fold
            else []
        )
        names = [clean_class_name(c) for c in classes] if self.clean_names else list(classes)
        return EvalDataset(name, task, folder, items, classes, names, split=split, folds=folds)
