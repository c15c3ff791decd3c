"""Several evaluations from one config file -> one report (``openclap eval suite --config FILE``).

A suite file is TOML (Python >= 3.11), JSON, or YAML (when PyYAML is installed)::

    model = "msclap-2023"                      # optional; --model on the command line wins
    checkpoint = "CLAP_weights_2023.pth"       # optional
    template = "this is the sound of {}"       # default prompt for zero-shot tasks
    # templates_file = "templates/sound.txt"   # or several prompts, averaged

    [[tasks]]
    eval = "zeroshot"                          # zeroshot | retrieval | linear-probe
    dataset = "esc50"                          # a registered dataset, or "manifest"
    root = "${DATA}/ESC-50-master"             # the dataset folder (or: manifest = "file.csv")
    # split = "test", label_column = "label", template = "...", templates_file = "..."
    # linear-probe only: train_split = "train", test_split = "test", num_folds = 5, weight_decay = 1e-3

Paths may use ``~`` and environment variables; relative paths are relative to the suite file's folder.
Unknown keys are errors.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TASK_KINDS = ("zeroshot", "retrieval", "linear-probe")
TOP_KEYS = {"model", "checkpoint", "tokenizer", "template", "templates_file", "tasks", "name"}
TASK_KEYS = {
    "eval",
    "dataset",
    "root",
    "manifest",
    "split",
    "label_column",
    "label_separator",
    "template",
    "templates_file",
    "train_split",
    "test_split",
    "num_folds",
    "weight_decay",
    "limit",
    "name",
}


@dataclass
class SuiteTask:
    """One evaluation of a suite."""

    eval: str
    dataset: str
    root: Path | None = None
    manifest: Path | None = None
    split: str | None = None
    label_column: str | None = None
    label_separator: str = ","
    templates: list[str] = field(default_factory=list)
    train_split: str | None = None
    test_split: str | None = None
    num_folds: int = 5
    weight_decay: float = 1e-3
    limit: int | None = None
    name: str | None = None


@dataclass
class Suite:
    """A parsed suite file."""

    path: Path
    tasks: list[SuiteTask]
    model: str | None = None
    checkpoint: str | None = None
    tokenizer: str | None = None


def _read(path: Path) -> dict[str, Any]:
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8")
    if suffix == ".toml":
        try:
            import tomllib
        except ImportError as exc:  # Python 3.10
            raise ValueError(
                f"{path}: TOML suites need Python >= 3.11; write the suite as JSON instead"
            ) from exc
        return tomllib.loads(text)
    if suffix == ".json":
        return json.loads(text)
    if suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as exc:
            raise ValueError(
                f"{path}: YAML suites need PyYAML (pip install pyyaml), or use TOML/JSON"
            ) from exc
        return yaml.safe_load(text)
    raise ValueError(f"{path}: unknown suite format {suffix!r}; use .toml, .json or .yaml")


def _path(value: str, base: Path) -> Path:
    p = Path(os.path.expandvars(os.path.expanduser(str(value))))
    if "$" in str(p):
        raise ValueError(f"environment variable in {value!r} is not set")
    return p if p.is_absolute() else base / p


def load_suite(path: str | os.PathLike) -> Suite:
    """Parse and validate a suite file (see the module docstring for the format)."""
    from openclap.eval.zero_shot import DEFAULT_TEMPLATE, check_templates, read_templates

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"suite file '{path}' not found")
    raw = _read(path)
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a suite is a table/object with a 'tasks' list")  # noqa: TRY004
    unknown = set(raw) - TOP_KEYS
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {sorted(unknown)}; allowed: {sorted(TOP_KEYS)}")
    base = path.parent
    default_templates = (
        [str(raw["template"])]
        if "template" in raw
        else read_templates(str(_path(raw["templates_file"], base)))
        if "templates_file" in raw
        else [DEFAULT_TEMPLATE]
    )
    tasks = []
    for n, entry in enumerate(raw.get("tasks") or [], 1):
        where = f"{path}: task {n}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected a table/object")  # noqa: TRY004
        unknown = set(entry) - TASK_KEYS
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(TASK_KEYS)}")
        if entry.get("eval") not in TASK_KINDS:
            raise ValueError(f"{where}: 'eval' must be one of {TASK_KINDS}, got {entry.get('eval')!r}")
        if "dataset" not in entry and "manifest" not in entry:
            raise ValueError(f"{where}: needs 'dataset' (+ 'root') or 'manifest'")
        dataset = str(entry.get("dataset", "manifest"))
        if dataset == "manifest" and "manifest" not in entry:
            raise ValueError(f"{where}: dataset 'manifest' needs a 'manifest' path")
        if dataset != "manifest" and "root" not in entry:
            raise ValueError(f"{where}: dataset {dataset!r} needs a 'root' folder")
        if "template" in entry:
            templates = [str(entry["template"])]
        elif "templates_file" in entry:
            templates = read_templates(str(_path(entry["templates_file"], base)))
        else:
            templates = list(default_templates)
        check_templates(templates)
        tasks.append(
            SuiteTask(
                eval=entry["eval"],
                dataset=dataset,
                root=_path(entry["root"], base) if "root" in entry else None,
                manifest=_path(entry["manifest"], base) if "manifest" in entry else None,
                split=entry.get("split"),
                label_column=entry.get("label_column"),
                label_separator=entry.get("label_separator", ","),
                templates=templates,
                train_split=entry.get("train_split"),
                test_split=entry.get("test_split"),
                num_folds=int(entry.get("num_folds", 5)),
                weight_decay=float(entry.get("weight_decay", 1e-3)),
                limit=entry.get("limit"),
                name=entry.get("name"),
            )
        )
    if not tasks:
        raise ValueError(f"{path}: no tasks; add [[tasks]] entries")
    checkpoint = str(_path(raw["checkpoint"], base)) if raw.get("checkpoint") else None
    tokenizer = str(_path(raw["tokenizer"], base)) if raw.get("tokenizer") else None
    return Suite(path, tasks, raw.get("model"), checkpoint, tokenizer)
