"""Task manifests from the evaluation suite's dataset adapters (ESC-50, VocalSound, CREMA-D, GTZAN, NSynth, ...).

The paper's 22 pretraining tasks come from public datasets in their publishers' layouts. The evaluation
suite already reads those layouts (``openclap.eval.datasets``); this module writes what an adapter reads
as a task manifest (CSV: ``path,label,fold,split,key``; multi-label rows join their labels with ``;``),
which a ``pretrain-audio`` task then names::

    python -m openclap_train.multitask.adapters esc50 ~/data/ESC-50-master --out manifests/esc50.csv
    # recipe:
    #   - {name: esc50, manifest: {path: manifests/esc50.csv, exclude: {fold: ["5"]}}, target: label}
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

from openclap.eval.datasets import DATASETS, MULTI_LABEL, RETRIEVAL, load_dataset

MANIFEST_COLUMNS = ("path", "label", "fold", "split", "key")


def adapter_manifest(
    name: str, root: str | os.PathLike, out: str | os.PathLike, split: str | None = None
) -> int:
    """Write dataset ``name`` (read from ``root`` by its adapter) as a task manifest; returns the row count."""
    dataset = load_dataset(name, root, split)
    if dataset.task == RETRIEVAL:
        raise ValueError(
            f"{name} is a captioning dataset: it has no class labels to pretrain a head on "
            "(use it as CLAP training data instead)"
        )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sep = ";"
    bad = [c for c in dataset.classes if sep in c]
    if bad and dataset.task == MULTI_LABEL:
        raise ValueError(f"{name}: class names {bad[:3]} contain the label separator {sep!r}")
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        for item in dataset.items:
            writer.writerow(
                {
                    "path": str(Path(item.path).resolve()),
                    "label": sep.join(dataset.classes[i] for i in item.labels),
                    "fold": item.fold or "",
                    "split": dataset.split or item.fold or "",
                    "key": item.key,
                }
            )
    tmp.replace(out)
    return len(dataset.items)


def main(argv: list[str] | None = None) -> int:
    """``python -m openclap_train.multitask.adapters NAME ROOT --out CSV [--split S]``."""
    parser = argparse.ArgumentParser(
        prog="python -m openclap_train.multitask.adapters",
        description="Write a dataset read by an evaluation adapter as a task manifest.",
    )
    parser.add_argument("dataset", choices=sorted(DATASETS), help="adapter name")
    parser.add_argument("root", help="the folder the publisher's archive unpacks to")
    parser.add_argument("--out", required=True, help="manifest CSV to write")
    parser.add_argument("--split", default=None, help="the adapter's split (when it has splits)")
    args = parser.parse_args(argv)
    try:
        n = adapter_manifest(args.dataset, args.root, args.out, args.split)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {n} rows to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
