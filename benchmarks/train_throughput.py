"""Training throughput of the real trainer: samples/s, data-wait share, and (on GPU) model FLOPs utilisation.

    python benchmarks/train_throughput.py                       # tiny, small, msclap-2023 on CPU
    python benchmarks/train_throughput.py --models small --batch-size 64 --steps 10
    python benchmarks/train_throughput.py --device cuda --precision bf16 --peak-tflops 989   # H100 bf16 dense

Each model trains ``--steps`` optimiser steps on real clips of ``../shared/data`` (FSDD, ESC-10 and
instruments mixed) through ``openclap_train.train`` (DataLoader, tokenisation in workers, loss, AdamW); the
first ``--warmup`` steps are left out of the averages. Model FLOPs per sample (forward + backward) come
from ``torch.utils.flop_counter`` on one batch; MFU = achieved FLOP/s / ``--peak-tflops``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
DEFAULT_BATCH = {"tiny": 32, "small": 32, "msclap-2023": 4}


def flops_per_sample(model_name: str, batch: int, device: str) -> float:
    """Forward + backward FLOPs of one training sample (flop counter over one batch of random input)."""
    from torch.utils.flop_counter import FlopCounterMode

    from openclap.factory import create_model, get_model_config
    from openclap.loss import ClipLoss

    cfg = get_model_config(model_name)
    model = create_model(cfg).to(device).train()
    wave = torch.randn(batch, cfg.audio.num_samples, device=device) * 0.1
    ids = torch.randint(1, 200, (batch, 16), device=device)
    with FlopCounterMode(display=False) as counter:
        out = model(wave, ids, torch.ones_like(ids))
        ClipLoss()(out.audio_embeds, out.text_embeds, model.logit_scale).backward()
    return counter.get_total_flops() / batch


def run_one(model: str, args: argparse.Namespace, work: Path) -> dict:
    from openclap_train.config import load_config
    from openclap_train.train import train

    batch = args.batch_size or DEFAULT_BATCH.get(model, 8)
    recipe = {
        "model": model,
        "train_manifest": [
            {"path": str(DATA / s / "manifest.csv"), "split": "train"}
            for s in ("fsdd", "esc10", "instruments")
        ],
        "batch_size": batch,
        "max_steps": args.steps,
        "log_every": 1,
        "save_every": 10**9,
        "num_workers": args.num_workers,
        "precision": args.precision,
        "device": args.device,
        "keep_checkpoints": 1,
        "seed": 0,
    }
    if args.num_threads:
        recipe["num_threads"] = args.num_threads
    path = work / f"{model}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    run_dir = work / model
    train(load_config(path), run_dir)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steady = [r for r in records if "loss" in r][args.warmup :] or records[-1:]
    sps = sum(r["samples_per_s"] for r in steady) / len(steady)
    wait = sum(r["data_wait"] for r in steady) / len(steady)
    row = {
        "model": model,
        "device": args.device,
        "precision": args.precision,
        "batch": batch,
        "steps_measured": len(steady),
        "samples_per_s": sps,
        "data_wait": wait,
    }
    if args.flops:
        fps = flops_per_sample(model, min(batch, 4), args.device)
        row["gflops_per_sample"] = fps / 1e9
        if args.peak_tflops:
            row["mfu"] = sps * fps / (args.peak_tflops * 1e12)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["tiny", "small", "msclap-2023"])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument(
        "--warmup", type=int, default=2, help="first steps left out (decoding, caches, allocator)"
    )
    parser.add_argument("--batch-size", type=int, default=None, help="global batch (default per model)")
    parser.add_argument("--num-workers", type=int, default=1)
    parser.add_argument("--num-threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--flops", action="store_true", help="count model FLOPs per sample")
    parser.add_argument(
        "--peak-tflops", type=float, default=None, help="device peak for MFU (H100 bf16 dense: 989)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    if not (DATA / "fsdd" / "manifest.csv").is_file():
        print(f"needs the real clips at {DATA}", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            rows.append(run_one(model, args, Path(tmp)))
            print(json.dumps(rows[-1]), flush=True)
    print(
        f"\n{'model':<12} {'device':<6} {'prec':<5} {'batch':>5} {'samples/s':>10} {'data-wait':>9} {'GFLOP/smp':>9} {'MFU':>6}"
    )
    for r in rows:
        gf = f"{r['gflops_per_sample']:.2f}" if "gflops_per_sample" in r else "-"
        mfu = f"{100 * r['mfu']:.1f}%" if "mfu" in r else "-"
        print(
            f"{r['model']:<12} {r['device']:<6} {r['precision']:<5} {r['batch']:>5} {r['samples_per_s']:>10.1f} "
            f"{100 * r['data_wait']:>8.0f}% {gf:>9} {mfu:>6}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
