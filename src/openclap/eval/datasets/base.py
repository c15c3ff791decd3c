"""What a dataset adapter returns: items with labels or captions, class names, official folds.

An adapter reads a dataset in the layout its publisher distributes (nothing is downloaded) and
returns an ``EvalDataset``. Files named by the metadata are listed whether or not they exist: the
evaluation reports missing and unreadable files once, with counts, and excludes them.

Class-name clean-up (what the prompt sees): ``clean_class_name`` replaces underscores with spaces,
collapses whitespace and lower-cases; an adapter may map codes or joined words to readable names
first (``CLASS_NAMES`` in each adapter, e.g. CREMA-D ``ANG`` -> ``anger``, VocalSound
``throatclearing`` -> ``throat clearing``). ``EvalDataset.classes`` keeps the publisher's spelling,
``EvalDataset.class_names`` the cleaned names used in prompts.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

SINGLE_LABEL = "single_label"
MULTI_LABEL = "multi_label"
RETRIEVAL = "retrieval"
TASKS = (SINGLE_LABEL, MULTI_LABEL, RETRIEVAL)


class DatasetLayoutError(FileNotFoundError):
    """The folder given as a dataset root does not have the publisher's layout."""


def clean_class_name(name: str) -> str:
    """'Accelerating_and_revving_and_vroom' -> 'accelerating and revving and vroom'."""
    return re.sub(r"\s+", " ", name.replace("_", " ")).strip().lower()


@dataclass(frozen=True)
class EvalItem:
    """One clip: its file, class indices (classification) or captions (retrieval), and its fold."""

    path: Path
    labels: tuple[int, ...] = ()
    captions: tuple[str, ...] = ()
    fold: str | None = None  # official fold or split name, used by the linear probe
    key: str = ""  # the dataset's own id for the clip (file name, note id, ...)


@dataclass
class EvalDataset:
    """A dataset ready for evaluation; ``classes`` is empty for retrieval datasets."""

    name: str
    task: str
    root: Path
    items: list[EvalItem]
    classes: list[str] = field(default_factory=list)  # publisher's spelling
    class_names: list[str] = field(default_factory=list)  # cleaned, used in prompts
    split: str | None = None
    folds: list[str] = field(default_factory=list)  # official folds, in order; empty if none
    notes: list[str] = field(default_factory=list)  # what the adapter skipped or assumed, for the report

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.classes and not self.class_names:
            self.class_names = [clean_class_name(c) for c in self.classes]
        if len(self.class_names) != len(self.classes):
            raise ValueError(f"{len(self.classes)} classes but {len(self.class_names)} class names")
        if not self.items:
            raise ValueError(f"dataset {self.name!r} at {self.root} has no items; check --root and --split")

    def __len__(self) -> int:
        return len(self.items)

    def subset(self, indices: Iterable[int]) -> EvalDataset:
        """The same dataset restricted to ``indices`` (order kept)."""
        items = [self.items[i] for i in indices]
        return EvalDataset(
            self.name,
            self.task,
            self.root,
            items,
            list(self.classes),
            list(self.class_names),
            self.split,
            list(self.folds),
            list(self.notes),
        )


class DatasetAdapter:
    """Reads one dataset's published layout. Subclasses set the class attributes and ``load``."""

    name: ClassVar[str]
    task: ClassVar[str]
    homepage: ClassVar[str]
    layout: ClassVar[str]  # the expected folder layout, shown in errors and docs
    splits: ClassVar[tuple[str, ...]] = ()
    default_split: ClassVar[str | None] = None
    # Linear probe: ("train", "test") to train on one split and test on another; empty -> use folds.
    probe_splits: ClassVar[tuple[str, str] | tuple[()]] = ()

    def load(self, root: str | os.PathLike, split: str | None = None) -> EvalDataset:
        """Read the dataset under ``root`` (the folder the publisher's archive unpacks to)."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------ helpers
    def _split(self, split: str | None) -> str | None:
        split = self.default_split if split is None else split
        if self.splits and split not in self.splits:
            raise ValueError(f"{self.name}: unknown split {split!r}; choose one of {', '.join(self.splits)}")
        if not self.splits and split not in (None, "all"):
            raise ValueError(f"{self.name} has no splits (all clips are evaluated); drop --split {split}")
        return split

    def _root(self, root: str | os.PathLike) -> Path:
        path = Path(root).expanduser()
        if not path.is_dir():
            raise DatasetLayoutError(
                f"{self.name}: dataset root '{path}' is not a folder. Download the dataset from "
                f"{self.homepage} and pass the folder it unpacks to; expected layout:\n{self.layout}"
            )
        return path

    def _need(self, path: Path) -> Path:
        if not path.exists():
            raise DatasetLayoutError(
                f"{self.name}: expected '{path}' but it does not exist. Pass the folder the archive from "
                f"{self.homepage} unpacks to; expected layout:\n{self.layout}"
            )
        return path

    def _first_existing(self, candidates: list[Path]) -> Path:
        for path in candidates:
            if path.exists():
                return path
        names = ", ".join(f"'{p}'" for p in candidates)
        raise DatasetLayoutError(
            f"{self.name}: none of {names} exists. Pass the folder the archive from {self.homepage} "
            f"unpacks to; expected layout:\n{self.layout}"
        )


def read_csv_rows(path: Path, required: Iterable[str], *, delimiter: str = ",") -> list[dict[str, str]]:
    """Rows of a CSV with a header; a missing required column is a ``ValueError`` naming the file."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        header = reader.fieldnames or []
        missing = [c for c in required if c not in header]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; the header is {header}")
        return list(reader)


def class_index(classes: list[str]) -> dict[str, int]:
    """Name -> index for a class list."""
    return {name: i for i, name in enumerate(classes)}
