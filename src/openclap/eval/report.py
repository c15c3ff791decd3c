"""Reports: a terminal table, ``results.json``, a markdown table beside the paper's numbers, and PNGs.

PNGs (a confusion matrix per single-label zero-shot result, a clip-by-caption similarity heatmap per
small retrieval set) need matplotlib, an optional dependency: without it the PNGs are skipped and the
report says so. Nothing else here needs it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from openclap import __version__

logger = logging.getLogger(__name__)

PAPER_NAME = "MS-CLAP 2023 (paper, Table 2)"
# Zero-shot results of the published 2023 weights (Elizalde et al. 2023, Table 2; listed in MISSION.md).
PAPER_2023: dict[tuple[str, str, str], float] = {
    ("zeroshot", "esc50", "accuracy"): 0.939,
    ("zeroshot", "urbansound8k", "accuracy"): 0.823,
    ("zeroshot", "fsd50k", "mAP"): 0.485,
    ("zeroshot", "vocalsound", "accuracy"): 0.800,
    ("zeroshot", "gtzan-music-speech", "accuracy"): 0.992,
    ("zeroshot", "gtzan-genres", "accuracy"): 0.584,
    ("zeroshot", "tut2017", "accuracy"): 0.538,
    ("zeroshot", "crema-d", "accuracy"): 0.300,
    ("zeroshot", "ravdess", "accuracy"): 0.315,
    ("retrieval", "audiocaps", "text_to_audio/R@1"): 0.356,
    ("retrieval", "audiocaps", "text_to_audio/mAP@10"): 0.510,
    ("retrieval", "audiocaps", "audio_to_text/R@1"): 0.425,
    ("retrieval", "clotho", "text_to_audio/R@1"): 0.157,
    ("retrieval", "clotho", "text_to_audio/mAP@10"): 0.257,
    ("retrieval", "clotho", "audio_to_text/R@1"): 0.229,
}

CONFUSION_MAX_CLASSES = 60  # larger confusion matrices are unreadable as images


def headline(result: dict[str, Any]) -> list[tuple[str, float, float | None]]:
    """(metric name, value, std or None) rows summarising one result dict."""
    kind, m = result["kind"], result["metrics"]
    if kind == "zeroshot":
        rows = (
            [("mAP", m["mAP"], None)]
            if result["task"] == "multi_label"
            else [("accuracy", m["accuracy"], None)]
        )
        if "top5_accuracy" in m:
            rows.append(("top5_accuracy", m["top5_accuracy"], None))
        return rows
    if kind == "retrieval":
        return [
            (f"{d}/{k}", m[d][k], None)
            for d in ("text_to_audio", "audio_to_text")
            for k in ("R@1", "R@5", "R@10", "mAP@10")
        ]
    metric = "mAP" if result["task"] == "multi_label" else "accuracy"
    one_test_split = len(result.get("folds", [])) == 1  # train/test splits: one score, no spread to show
    return [(metric, m[metric], None if one_test_split else m[f"{metric}_std"])]


def _split_cell(result: dict[str, Any]) -> str:
    """The split column: a linear probe on train/test splits shows both (train -> test)."""
    split = str(result.get("split") or "-")
    folds = result.get("folds", [])
    if result["kind"] == "linear-probe" and len(folds) == 1:
        return f"{split} -> {folds[0]['fold']}"
    return split


def paper_value(result: dict[str, Any], metric: str) -> float | None:
    """The paper's number for this dataset and metric, if the paper reports it."""
    return PAPER_2023.get((result["kind"], result["dataset"], metric))


def _pct(x: float | None, std: float | None = None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{100 * x:.1f} ± {100 * std:.1f}" if std is not None else f"{100 * x:.1f}"


def table_rows(results: Sequence[dict[str, Any]]) -> list[list[str]]:
    """Rows (strings) for the terminal and markdown tables; values in percent."""
    rows = []
    for r in results:
        excluded = r["excluded"]["count"]
        for metric, value, std in headline(r):
            rows.append(
                [
                    r["kind"],
                    r["dataset"],
                    _split_cell(r),
                    metric,
                    _pct(value, std),
                    _pct(paper_value(r, metric)),
                    f"{r['num_evaluated']}/{r['num_items']}",
                    str(excluded),
                ]
            )
    return rows


HEADER = ["eval", "dataset", "split", "metric", "value (%)", "paper (%)", "clips", "excluded"]


def format_table(results: Sequence[dict[str, Any]]) -> str:
    """A plain-text table for the terminal."""
    rows = [HEADER] + table_rows(results)
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_markdown(payload: dict[str, Any]) -> str:
    """The markdown report: model, one table with the paper's numbers side by side, and notes."""
    results = payload["results"]
    model = payload["model"]
    lines = [
        "# openclap evaluation",
        "",
        f"Model: `{model['name']}`"
        + (f", checkpoint `{model['checkpoint']}`" if model.get("checkpoint") else "")
        + f" (fingerprint `{model['fingerprint']}`), openclap {payload['openclap_version']}.",
        "",
        f'Values are percentages; "paper" is {PAPER_NAME}, shown where the paper reports the dataset.',
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "|".join("---" for _ in HEADER) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(results)]
    notes = []
    for r in results:
        ex = r["excluded"]
        if ex["count"]:
            notes.append(
                f"- {r['kind']} {r['dataset']}: {ex['count']} of {r['num_items']} file(s) excluded "
                f"({ex['missing']} missing, {ex['unreadable']} unreadable)."
            )
        if r["kind"] == "linear-probe":
            notes.append(f"- linear-probe {r['dataset']}: {r['protocol']}.")
        if r["kind"] == "zeroshot":
            notes.append(f"- zeroshot {r['dataset']}: templates {r['templates']}.")
        notes += [f"- {r['kind']} {r['dataset']}: {n}" for n in r.get("notes", [])]
    notes += [f"- {n}" for n in payload.get("notes", [])]
    if notes:
        lines += ["", "## Notes", ""] + notes
    if payload.get("figures"):
        lines += ["", "## Figures", ""] + [f"![{Path(f).stem}]({f})" for f in payload["figures"]]
    return "\n".join(lines) + "\n"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def write_figures(
    out: Path, results: Sequence[dict[str, Any]], raw: Sequence[Any]
) -> tuple[list[str], list[str]]:
    """Write PNGs; returns (file names written, notes). ``raw`` are the result objects (heatmaps)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return [], ["PNG figures skipped: matplotlib is not installed (pip install matplotlib)"]
    written, notes = [], []
    for r, obj in zip(results, raw):
        if r["kind"] == "zeroshot" and r.get("confusion_matrix") is not None:
            cm = np.asarray(r["confusion_matrix"], dtype=np.float64)
            if cm.shape[0] > CONFUSION_MAX_CLASSES:
                notes.append(
                    f"confusion matrix of {r['dataset']} not drawn ({cm.shape[0]} classes > "
                    f"{CONFUSION_MAX_CLASSES}); it is in results.json"
                )
                continue
            rows = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
            size = max(4.0, 0.32 * cm.shape[0] + 2)
            fig, ax = plt.subplots(figsize=(size + 1, size))
            image = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
            ax.set_xticks(range(cm.shape[0]), r["classes"], rotation=90, fontsize=7)
            ax.set_yticks(range(cm.shape[0]), r["classes"], fontsize=7)
            ax.set_xlabel("predicted")
            ax.set_ylabel("true")
            ax.set_title(f"{r['dataset']} zero-shot, accuracy {100 * r['metrics']['accuracy']:.1f} %")
            fig.colorbar(image, ax=ax, fraction=0.046, label="fraction of the true class")
            name = f"confusion_{_slug(r['dataset'])}.png"
        elif r["kind"] == "retrieval" and getattr(obj, "heatmap", None) is not None:
            heat = obj.heatmap
            size = max(4.0, 0.16 * heat.shape[0] + 2)
            fig, ax = plt.subplots(figsize=(size + 1, size))
            image = ax.imshow(heat, cmap="viridis")
            ax.set_xlabel("first caption of clip")
            ax.set_ylabel("clip")
            ax.set_title(f"{r['dataset']}: audio-text cosine similarity")
            fig.colorbar(image, ax=ax, fraction=0.046)
            name = f"similarity_{_slug(r['dataset'])}.png"
        else:
            continue
        stem, k = name[: -len(".png")], 2
        while name in written:  # two results on one dataset: confusion_esc50.png, confusion_esc50_2.png
            name, k = f"{stem}_{k}.png", k + 1
        fig.tight_layout()
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        written.append(name)
    return written, notes


def build_payload(results: Sequence[Any], model: dict[str, Any], notes: Sequence[str] = ()) -> dict[str, Any]:
    """The ``results.json`` document for result objects (``ZeroShotResult``, ...)."""
    return {
        "openclap_version": __version__,
        "model": model,
        "results": [r.as_dict() for r in results],
        "notes": list(notes),
    }


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dumps(payload: dict[str, Any]) -> str:
    """JSON text of a payload (NaN written as null)."""

    def clean(x: Any) -> Any:
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        return x

    return json.dumps(clean(json.loads(json.dumps(payload, default=_json_default))), indent=2)


def write_report(out_dir: str | os.PathLike, payload: dict[str, Any], raw: Sequence[Any]) -> list[Path]:
    """Write results.json, results.md and the PNGs into ``out_dir``; returns the files written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures, fig_notes = write_figures(out, payload["results"], raw)
    payload = dict(payload, figures=figures, notes=list(payload.get("notes", [])) + fig_notes)
    for note in fig_notes:
        logger.warning(note)
    (out / "results.json").write_text(dumps(payload) + "\n")
    (out / "results.md").write_text(format_markdown(payload))
    return [out / "results.json", out / "results.md"] + [out / f for f in figures]
