"""Why ``--compile`` does not pay on a CPU: the audio encoder as AOTInductor packages against eager.

    python benchmarks/compile_variants.py [--batch 8] [--threads 2] [--rounds 8] [--model msclap-2023]

Random weights, 7 s clips. The encoder (log-mel -> features, what ``openclap.compiled`` packages) is
exported and compiled four ways: with a dynamic batch dimension (what ``--compile`` ships, so one package
serves every batch size) or for exactly ``--batch`` clips, each with inductor's defaults or with
``freezing`` (weights as constants: oneDNN prepacking and fused linear + pointwise kernels). Each package
and the eager fast path take turns ``--rounds`` times in one process; the table gives each one's median
and the median of its per-round ratio to eager, so that the drift of a shared machine cancels. Compiles
take about a minute each on 2 cores (kept in a temporary folder, removed at the end).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from _machine import machine_line  # benchmarks/_machine.py (scripts run from benchmarks/)

import openclap
from openclap.compiled import _AudioFeatures

VARIANTS = {  # name -> (dynamic batch, inductor configs)
    "dynamic batch (--compile)": (True, {}),
    "dynamic batch + freezing": (True, {"freezing": True}),
    "static batch": (False, {}),
    "static batch + freezing": (False, {"freezing": True}),
}


def package(module: torch.nn.Module, logmel: torch.Tensor, dynamic: bool, configs: dict, path: Path):
    """Export ``module`` on ``logmel`` (batch dimension dynamic or fixed), compile it and load it back."""
    from torch._inductor import aoti_compile_and_package, aoti_load_package

    if dynamic:
        batch = torch.export.Dim("batch", min=1, max=65536)
        program = torch.export.export(module, (logmel[:2],), dynamic_shapes=({0: batch},))
    else:
        program = torch.export.export(module, (logmel,))
    aoti_compile_and_package(program, package_path=str(path), inductor_configs=configs)
    return aoti_load_package(str(path))


def main() -> None:
    """Compile the variants, time them in turns with eager, print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="msclap-2023")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    print(machine_line())
    model = openclap.load(args.model, pretrained=False).model.eval()
    rate = model.config.audio.frontend.sample_rate
    wave = torch.randn(args.batch, 7 * rate, generator=torch.Generator().manual_seed(0)) * 0.1
    runners = {}
    with torch.no_grad(), tempfile.TemporaryDirectory() as tmp:
        logmel = model.audio_frontend(wave)  # (B, frames, mels): the front end stays eager in --compile
        eager = _AudioFeatures(model.audio_encoder).eval()
        runners["eager fast path"] = eager
        compile_seconds = {}
        for i, (name, (dynamic, configs)) in enumerate(VARIANTS.items()):
            t0 = time.perf_counter()
            runners[name] = package(eager, logmel, dynamic, configs, Path(tmp) / f"v{i}.pt2")
            compile_seconds[name] = time.perf_counter() - t0
            print(f"compiled {name} in {compile_seconds[name]:.0f} s", flush=True)
        reference = eager(logmel)
        cosine = {
            k: torch.nn.functional.cosine_similarity(r(logmel), reference).min().item()
            for k, r in runners.items()
        }
        times: dict[str, list[float]] = {k: [] for k in runners}
        for _ in range(args.rounds):  # take turns: each round times every runner once
            for k, r in runners.items():
                t0 = time.perf_counter()
                r(logmel)
                times[k].append(time.perf_counter() - t0)
    base = times["eager fast path"]
    print(
        f"\n{args.model} audio encoder, batch {args.batch} x 7 s, {args.threads} threads, {args.rounds} rounds"
    )
    print(
        f"{'variant':28s} {'compile s':>9s} {'median ms':>9s} {'vs eager (median of rounds)':>28s} {'min cos':>9s}"
    )
    for k in runners:
        ratio = statistics.median(b / t for b, t in zip(base, times[k]))
        spent = f"{compile_seconds[k]:.0f}" if k in compile_seconds else "-"
        print(f"{k:28s} {spent:>9s} {statistics.median(times[k]) * 1e3:9.1f} {ratio:27.3f}x {cosine[k]:9.6f}")


if __name__ == "__main__":
    main()
