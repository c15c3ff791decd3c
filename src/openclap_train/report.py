"""Summarise a finished run: the training curve (PNG) and zero-shot / retrieval numbers on test manifests.

    python -m openclap_train.report runs/small \\
        --test fsdd=../shared/data/fsdd/manifest.csv esc10=../shared/data/esc10/manifest.csv \\
        --split test --template "the sound of {}"

writes ``RUN/curve.png`` and ``RUN/test_metrics.json`` and prints a table. The model is read with
``openclap.load(RUN/final)``, exactly as a user would load it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from openclap.pipeline import fill_template
from openclap_train.config import ManifestSpec
from openclap_train.data import read_manifest
from openclap_train.evaluate import prompt_label, retrieval_recall


def plot_curve(run_dir: Path, out: Path) -> Path:
    """Training loss and every validation metric against the step, from ``metrics.jsonl``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    train = [r for r in records if "loss" in r]
    val = [r for r in records if any(k.startswith("val/") for k in r)]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss (batch)")
    if val:
        ax1.plot(
            [r["step"] for r in val],
            [r["train_loss_window"] for r in val],
            "o-",
            label="train loss (window mean)",
        )
        for key in sorted({k for r in val for k in r if k.startswith("val/")}):
            ax2.plot(
                [r["step"] for r in val if key in r], [r[key] for r in val if key in r], "o-", label=key[4:]
            )
    ax1.set_xlabel("step")
    ax1.set_ylabel("symmetric InfoNCE")
    ax1.legend()
    ax2.set_xlabel("step")
    ax2.set_ylim(0, 1)
    ax2.set_title("validation (held out of training)")
    ax2.legend(fontsize=8)
    fig.suptitle(f"openclap training: {run_dir.name}")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def evaluate_test_sets(
    final_dir: Path, sets: dict[str, str], split: str | None, templates: list[str]
) -> dict:
    """Zero-shot accuracy (per template) and text-to-audio R@1/R@5 per set, with ``openclap.load``."""
    import openclap

    pipe = openclap.load(final_dir)
    results: dict[str, dict[str, float]] = {}
    for name, manifest in sets.items():
        samples = read_manifest(ManifestSpec(path=manifest, split=split))
        audio = torch.from_numpy(pipe.embed_audio([s.path for s in samples], batch_size=32))
        labels = [s.label for s in samples]
        # candidates: every label of the manifest (all splits), e.g. the 65 instruments, not only those in test
        classes = sorted({s.label for s in read_manifest(ManifestSpec(path=manifest))} | set(labels))
        row: dict[str, float] = {"n": len(samples), "classes": len(classes), "chance": 1 / len(classes)}
        truth = np.array([classes.index(lab) for lab in labels])
        for template in templates:
            prompts = torch.from_numpy(
                pipe.embed_text([fill_template(template, prompt_label(c)) for c in classes])
            )
            pred = (audio @ prompts.T).argmax(dim=1).numpy()
            row[f"zeroshot_acc[{template}]"] = float((pred == truth).mean())
        text = torch.from_numpy(pipe.embed_text([s.caption for s in samples]))
        row.update(retrieval_recall(audio, text, [s.caption for s in samples]))
        results[name] = row
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m openclap_train.report", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("run_dir", type=Path)
    parser.add_argument(
        "--test", nargs="*", default=[], metavar="NAME=MANIFEST", help="test manifests to evaluate"
    )
    parser.add_argument("--split", default="test", help="split column value to evaluate (default: test)")
    parser.add_argument("--template", action="append", default=None, help="zero-shot prompt(s) with {}")
    args = parser.parse_args(argv)
    png = plot_curve(args.run_dir, args.run_dir / "curve.png")
    print(f"curve: {png}")
    if not args.test:
        return 0
    sets = dict(item.split("=", 1) for item in args.test)
    templates = args.template or ["the sound of {}", "this is the sound of {}", "{}"]
    results = evaluate_test_sets(args.run_dir / "final", sets, args.split, templates)
    (args.run_dir / "test_metrics.json").write_text(json.dumps(results, indent=2) + "\n")
    for name, row in results.items():
        print(name, " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
