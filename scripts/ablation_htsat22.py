"""Ablation: does multi-task pretraining of the audio tower (the paper's "HTSAT-22" stage) help CLAP?

Rows (same seeds, same total optimiser steps of the same global batch):

* ``scratch``            CLAP from random weights for ``P + C`` steps;
* ``scratch-C``          CLAP from random weights for ``C`` steps only (what the pretrained rows get of CLAP);
* ``multitask``          ``P`` steps of multi-task pretraining (7 tasks, 3 datasets), then ``C`` CLAP steps
                         with the audio tower initialised from it (heads dropped);
* ``esc10-only``         ``P`` steps of single-task pretraining (ESC-10 classes), then ``C`` CLAP steps.

Every CLAP run is evaluated once, at its end, on the ``test`` splits of ../shared/data (zero-shot accuracy
with the prompt "the sound of {label}", text-to-audio R@1 with captions as queries). Pretraining uses
only train splits (10 % held out by file name for its own validation metrics).

    python scripts/ablation_htsat22.py --threads 1 --out runs/ablation-small            # ~60 min on 1 busy core
    python scripts/ablation_htsat22.py --out runs/ablation-small --rows scratch-C       # add or resume rows (same sizes)
    python scripts/ablation_htsat22.py --out runs/ablation-small --report               # table + PNG from results
    python scripts/ablation_htsat22.py --out runs/ablation-small --probe                # linear probe of the towers

The defaults (``small`` preset, 2.5 s crops, batch 64, P = 150, C = 300) are a scale at which CLAP itself
learns here (from scratch, P + C steps: 68 ± 21 % zero-shot on FSDD test, 39 ± 8 % on ESC-10, three seeds);
with ``--model tiny`` CLAP stays at chance on FSDD and the ablation says nothing. Results and their reading:
docs/pretraining.md. ``--report`` and ``--probe`` take the sizes from the run's ``args.json``.

Finished runs are skipped when the script is started again (``results/*.json``), so it can be resumed.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SETS = ("fsdd", "esc10", "instruments")
ROWS = ("scratch", "scratch-C", "multitask", "esc10-only")
SIZE_ARGS = ("model", "duration", "batch_size", "lr", "pretrain_steps", "clap_steps")
ROW_TITLES = {
    "scratch": "CLAP from scratch (P+C steps)",
    "scratch-C": "CLAP from scratch (C steps)",
    "multitask": "multi-task pretrained tower (P) + CLAP (C)",
    "esc10-only": "ESC-10-only pretrained tower (P) + CLAP (C)",
}
METRICS = [(f"val/{s}/zeroshot_acc", f"{s} zero-shot acc") for s in SETS] + [
    (f"val/{s}/t2a_R@1", f"{s} t2a R@1") for s in SETS
]

logger = logging.getLogger("ablation")


def model_overrides(duration: float) -> dict[str, Any]:
    return {"audio": {"duration": duration}}


def clap_config(args: argparse.Namespace, seed: int, steps: int) -> dict[str, Any]:
    """The CLAP recipe shared by every row (only the steps and the audio-tower init differ)."""
    return {
        "model": args.model,
        "model_overrides": model_overrides(args.duration),
        "tokenizer": "train",
        "tokenizer_vocab_size": 1000,
        "train_manifest": [{"path": str(DATA / s / "manifest.csv"), "split": "train"} for s in SETS],
        "val_manifest": [{"path": str(DATA / s / "manifest.csv"), "split": "test", "name": s} for s in SETS],
        "zeroshot_template": "the sound of {}",
        "augment": {"gain_db": 6.0},
        "batch_size": args.batch_size,
        "optim": {
            "optimizer": "adamw",
            "lr": args.lr,
            "weight_decay": 0.01,
            "warmup_steps": 10,
            "schedule": "cosine",
            "min_lr_ratio": 0.05,
            "grad_clip": 1.0,
        },
        "max_steps": steps,
        "seed": seed,
        "log_every": 25,
        "eval_every": 0,
        "save_every": 10_000,
        "keep_checkpoints": 1,
    }


def pretrain_config(args: argparse.Namespace, seed: int, single_task: bool) -> dict[str, Any]:
    """The 7-task recipe (configs/pretrain-audio/shared-data-7tasks.yaml) at the ablation's size."""
    recipe = yaml.safe_load((ROOT / "configs" / "pretrain-audio" / "shared-data-7tasks.yaml").read_text())
    tasks = recipe["tasks"]
    for task in tasks:
        for key in ("manifest", "val_manifest"):
            if isinstance(task.get(key), dict):
                name = Path(task[key]["path"]).parent.name
                task[key]["path"] = str(DATA / name / "manifest.csv")
    if single_task:
        tasks = [t for t in tasks if t["name"] == "esc10_class"]
    recipe.update(
        model=args.model,
        model_overrides=model_overrides(args.duration),
        tasks=tasks,
        batch_size=args.batch_size,
        optim={**recipe.get("optim", {}), "lr": args.lr, "warmup_steps": 10},
        max_steps=args.pretrain_steps,
        seed=seed,
        log_every=25,
        eval_every=0,
        save_every=10_000,
        keep_checkpoints=1,
    )
    return recipe


def run_one(args: argparse.Namespace, row: str, seed: int) -> dict[str, Any]:
    """Train one row for one seed; returns its final metrics (+ wall times)."""
    from openclap_train.config import TrainConfig, build
    from openclap_train.multitask.config import PretrainConfig
    from openclap_train.multitask.train import pretrain
    from openclap_train.train import train

    P, C = args.pretrain_steps, args.clap_steps
    base = Path(args.out) / "runs" / f"{row}-seed{seed}"
    if base.exists():  # an interrupted attempt: start it again from nothing
        shutil.rmtree(base)
    out: dict[str, Any] = {"row": row, "seed": seed}
    t0 = time.perf_counter()
    if row in ("scratch", "scratch-C"):
        steps = P + C if row == "scratch" else C
        result = train(build(TrainConfig, clap_config(args, seed, steps)), base / "clap")
        out.update(clap_steps=steps, pretrain_steps=0)
    else:
        pt = build(PretrainConfig, pretrain_config(args, seed, single_task=row == "esc10-only"))
        pre = pretrain(pt, base / "pretrain")
        out["pretrain_s"] = time.perf_counter() - t0
        out["pretrain_val"] = {k: v for k, v in pre.last_metrics.items() if k.startswith("val/")}
        result = train(
            build(TrainConfig, {**clap_config(args, seed, C), "init_audio": str(pre.final_dir)}),
            base / "clap",
        )
        out.update(clap_steps=C, pretrain_steps=P)
    out["wall_s"] = time.perf_counter() - t0
    out["metrics"] = {k: v for k, v in result.last_metrics.items() if k.startswith("val/")}
    if not args.keep_runs:  # keep metrics and configs, drop weights and checkpoints
        for sub in base.glob("*/checkpoints"):
            shutil.rmtree(sub)
    return out


def probe_towers(args: argparse.Namespace, out_dir: Path) -> str:
    """Linear probe (logistic regression, train split -> test split) on frozen tower features: random tower vs
    the pretrained towers of each seed. Shows what pretraining did to the tower itself, before CLAP."""
    import csv

    import numpy as np
    import torch

    from openclap.audio.io import load_audio
    from openclap.config import ClapConfig
    from openclap.eval.linear_probe import ProbeConfig, predict_scores, train_logistic
    from openclap.factory import resolve_config
    from openclap_train.audio_tower import load_audio_tower
    from openclap_train.multitask.config import HeadConfig
    from openclap_train.multitask.evaluate import clip_features
    from openclap_train.multitask.model import MultiTaskAudioModel

    data = resolve_config(args.model).to_dict()
    data["audio"]["duration"] = args.duration
    audio = ClapConfig.from_dict(data).audio
    sets = {}
    for name in SETS:
        with open(DATA / name / "manifest.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        split = {sp: [r for r in rows if r["split"] == sp] for sp in ("train", "test")}
        classes = sorted({r["label"] for r in rows})
        waves = {
            sp: [load_audio(DATA / name / r["path"], audio.sample_rate) for r in rs]
            for sp, rs in split.items()
        }
        labels = {sp: np.array([classes.index(r["label"]) for r in rs]) for sp, rs in split.items()}
        sets[name] = (waves, labels, len(classes))
    results: dict[str, list[dict[str, float]]] = {}
    for seed in args.seeds:
        towers = {"random tower": None}
        for row in ("multitask", "esc10-only"):
            final = out_dir / "runs" / f"{row}-seed{seed}" / "pretrain" / "final"
            if final.is_dir():
                towers[f"{row} tower"] = final
        for label, final in towers.items():
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = MultiTaskAudioModel(audio, {}, HeadConfig())
            if final is not None:
                load_audio_tower(model, final)
            scores = {}
            for name, (waves, labels, k) in sets.items():
                feats = {sp: clip_features(model, waves[sp], 64, torch.device("cpu")).numpy() for sp in waves}
                params = train_logistic(feats["train"], labels["train"], k, False, ProbeConfig())
                pred = predict_scores(feats["test"], params).argmax(1)
                scores[name] = float((pred == labels["test"]).mean())
            results.setdefault(label, []).append(scores)
            logger.info("probe seed %d %s: %s", seed, label, scores)
    lines = [
        "Linear probe on frozen tower features (train split -> test split accuracy, mean ± std over seeds):",
        "",
        "| tower | " + " | ".join(SETS) + " |",
        "|" + " --- |" * (len(SETS) + 1),
    ]
    for label, rs in results.items():
        cells = [
            f"{mean_std([100 * r[n] for r in rs])[0]:.1f} ± {mean_std([100 * r[n] for r in rs])[1]:.1f}"
            for n in SETS
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    (out_dir / "probe.md").write_text(text)
    return text


def mean_std(values: list[float]) -> tuple[float, float]:
    m = sum(values) / len(values)
    s = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return m, s


def report(out_dir: Path, args: argparse.Namespace) -> str:
    """Markdown table (mean ± std over seeds) and a PNG bar chart from results/*.json."""
    results = [json.loads(p.read_text()) for p in sorted((out_dir / "results").glob("*.json"))]
    title = (
        f"Ablation (model {args.model}, {args.duration:g} s crops, batch {args.batch_size}, "
        f"P = {args.pretrain_steps} pretraining steps, C = {args.clap_steps} CLAP steps; "
        "test splits; mean ± std over seeds)"
    )
    lines = [title, ""]
    header = "| row | seeds | " + " | ".join(title for _, title in METRICS) + " | wall s/run |"
    lines += [header, "|" + " --- |" * (len(METRICS) + 3)]
    summary: dict[str, dict[str, tuple[float, float]]] = {}
    for row in ROWS:
        rs = [r for r in results if r["row"] == row]
        if not rs:
            continue
        cells = []
        summary[row] = {}
        for key, _ in METRICS:
            m, s = mean_std([100 * r["metrics"][key] for r in rs])
            summary[row][key] = (m, s)
            cells.append(f"{m:.1f} ± {s:.1f}")
        wall = sum(r["wall_s"] for r in rs) / len(rs)
        lines.append(
            f"| {ROW_TITLES[row]} | {','.join(str(r['seed']) for r in rs)} | "
            + " | ".join(cells)
            + f" | {wall:.0f} |"
        )
    lines += [
        "",
        "Chance: zero-shot 10 % (fsdd), 10 % (esc10), 1.5 % (instruments).",
        "",
        "Per seed:",
        "",
        "| row | seed | " + " | ".join(title for _, title in METRICS) + " |",
        "|" + " --- |" * (len(METRICS) + 2),
    ]
    for row in ROWS:
        for r in sorted((r for r in results if r["row"] == row), key=lambda r: r["seed"]):
            lines.append(
                f"| {row} | {r['seed']} | "
                + " | ".join(f"{100 * r['metrics'][k]:.1f}" for k, _ in METRICS)
                + " |"
            )
    pre = [r for r in results if r.get("pretrain_val")]
    if pre:
        lines += ["", "Pretraining validation (held-out 10 % of train clips, mean over seeds):", ""]
        for row in ("multitask", "esc10-only"):
            rs = [r for r in pre if r["row"] == row]
            if rs:
                keys = sorted(rs[0]["pretrain_val"])
                vals = ", ".join(
                    f"{k.removeprefix('val/')} {mean_std([r['pretrain_val'][k] for r in rs])[0]:.3f}"
                    for k in keys
                    if not k.endswith("/loss")
                )
                lines.append(f"- {row}: {vals}")
    text = "\n".join(lines) + "\n"
    (out_dir / "table.md").write_text(text)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 4.2))
    rows = [r for r in ROWS if r in summary]
    width = 0.8 / max(1, len(rows))
    for i, row in enumerate(rows):
        ms = [summary[row][k][0] for k, _ in METRICS]
        ss = [summary[row][k][1] for k, _ in METRICS]
        ax.bar(
            [j + i * width for j in range(len(METRICS))], ms, width, yerr=ss, capsize=3, label=ROW_TITLES[row]
        )
    ax.set_xticks([j + width * (len(rows) - 1) / 2 for j in range(len(METRICS))])
    ax.set_xticklabels([t for _, t in METRICS], rotation=15)
    ax.set_ylabel("% (test split)")
    ax.set_title(
        f"HTSAT-22-style pretraining ablation ({args.model}, P={args.pretrain_steps}, "
        f"C={args.clap_steps}, mean ± std over seeds)"
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "ablation.png", dpi=120)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default=str(ROOT / "runs" / "ablation-small"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS)
    parser.add_argument("--model", default="small")
    parser.add_argument(
        "--duration", type=float, default=2.5, help="crop length in seconds (model_overrides)"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--pretrain-steps", type=int, default=150)
    parser.add_argument("--clap-steps", type=int, default=300)
    parser.add_argument("--keep-runs", action="store_true", help="keep checkpoints of every run")
    parser.add_argument("--report", action="store_true", help="only write table.md and ablation.png")
    parser.add_argument("--probe", action="store_true", help="only the linear probe of the towers (probe.md)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    out_dir = Path(args.out)
    (out_dir / "results").mkdir(parents=True, exist_ok=True)
    saved = out_dir / "args.json"
    if (
        args.report or args.probe
    ) and saved.is_file():  # label/rebuild with the sizes the runs were made with
        ran = json.loads(saved.read_text())
        for key in SIZE_ARGS:
            if key in ran:
                setattr(args, key, ran[key])
    else:
        if saved.is_file() and any((out_dir / "results").glob("*.json")):
            ran = json.loads(saved.read_text())
            differ = [k for k in SIZE_ARGS if k in ran and ran[k] != getattr(args, k)]
            if differ:
                parser.error(
                    f"{out_dir} holds results made with other sizes ({', '.join(differ)}); "
                    "pass the same flags or use another --out"
                )
        saved.write_text(json.dumps(vars(args), indent=2) + "\n")
    if args.probe:
        print(probe_towers(args, out_dir))
        return 0
    if not args.report:
        for seed in args.seeds:  # seed-major: a stopped ablation still has complete seeds
            for row in args.rows:
                path = out_dir / "results" / f"{row}-seed{seed}.json"
                if path.is_file():
                    continue
                logger.info("=== %s seed %d", row, seed)
                result = run_one(args, row, seed)
                path.write_text(json.dumps(result, indent=2) + "\n")
                logger.info(
                    "=== %s seed %d done in %.0fs: %s", row, seed, result["wall_s"], result["metrics"]
                )
                report(out_dir, args)
    print(report(out_dir, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
