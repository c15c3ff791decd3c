"""Speed of a zero-shot evaluation: clips/s on the first run (cold embedding cache) and a cached run.

    python benchmarks/eval_speed.py [--model tiny] [--manifest ../shared/data/esc10/manifest.csv]
                                    [--split test] [--threads N] [--device cpu]

The cached run uses other prompts, as a user trying templates would: it decodes no audio and only
embeds the new prompts. Prints a table (one row per run) and the machine it ran on.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import tempfile
from pathlib import Path

import torch

import openclap
from openclap.eval.cache import EmbeddingCache, pipeline_fingerprint
from openclap.eval.datasets import Manifest
from openclap.eval.zero_shot import zero_shot

DEFAULT_MANIFEST = Path(__file__).resolve().parents[2] / "shared" / "data" / "esc10" / "manifest.csv"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="tiny", help="preset or model directory (default tiny)")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--manifest", default=str(DEFAULT_MANIFEST), help="labelled manifest to evaluate")
    parser.add_argument("--split", default="test", help="manifest split ('all' for every row)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)

    pipeline = openclap.load(args.model, checkpoint=args.checkpoint, device=args.device)
    dataset = Manifest().load(args.manifest, split=None if args.split == "all" else args.split)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, EmbeddingCache(tmp, pipeline_fingerprint(pipeline)) as cache:
        runs = [
            ("first run (cold cache)", ["this is the sound of {}"], cache),
            ("cached run, other prompts", ["a recording of {}", "{} can be heard"], cache),
            ("no cache", ["this is the sound of {}"], None),
        ]
        for name, templates, use_cache in runs:
            result = zero_shot(pipeline, dataset, templates, cache=use_cache, batch_size=args.batch_size)
            t = result.timing
            rows.append(
                [
                    name,
                    str(result.num_items),
                    f"{t['seconds']:.2f}",
                    f"{t['clips_per_second']:.1f}",
                    str(t["cached"]),
                    str(t["computed"]),
                    f"{100 * result.metrics['accuracy']:.1f}",
                ]
            )

    header = ["run", "clips", "seconds", "clips/s", "cached", "computed", "accuracy %"]
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    print(
        f"zero-shot evaluation speed: model {args.model}, {dataset.name} ({args.split}), device {args.device}, "
        f"torch threads {torch.get_num_threads()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    for row in [header, ["-" * w for w in widths]] + rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


if __name__ == "__main__":
    main()
