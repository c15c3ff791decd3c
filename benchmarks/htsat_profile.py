"""Where HTSAT-tiny's time goes: torch.profiler by operator and by module, and GFLOP/s vs a matmul roof.

    python benchmarks/htsat_profile.py [--batch 8] [--threads 1] [--repeats 3] [--rounds 2] [--top 15]

Random weights, msclap-2023 sizes, 7 s clips (965 frames x 64 mels), fast path and reference path. The
roof is a 2048 x 2048 float32 matrix product measured in the same run with the same thread count; FLOPs
are counted with ``torch.utils.flop_counter`` (matmuls, convolutions and SDPA; 2 per multiply-add).
Times are medians over ``--repeats`` after a warm-up; other jobs on a shared machine disturb them, so
compare rows of one run only.
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from openclap.audio import swin_fast
from openclap.audio.htsat import HTSAT
from openclap.config import HTSATConfig

FRAMES_7S = 1 + (7 * 44100) // 320


def median_seconds(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(median, spread = max - min) of wall seconds over ``repeats`` calls after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), max(times) - min(times)


def matmul_roof(repeats: int) -> float:
    """GFLOP/s of a 2048^2 float32 matrix product (the machine's practical fp32 peak)."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    t, _ = median_seconds(lambda: a @ b, repeats)
    return 2 * 2048**3 / t / 1e9


def reference_gflop(encoder: HTSAT, mel: torch.Tensor) -> float:
    """GFLOP of one forward of ``encoder`` on ``mel``, counted on its reference path: the counter does not
    see the oneDNN fused linear ops of the fast path (it would count about a quarter)."""
    fast = encoder.fast_path
    encoder.set_fast_path(False)
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            encoder(mel)
    finally:
        encoder.set_fast_path(fast)
    return counter.get_total_flops() / 1e9


def module_labels(model: nn.Module) -> list[torch.utils.hooks.RemovableHandle]:
    """Wrap each leaf module's forward in a profiler range named by its role (``mlp.fc1``, ``norm1``, ...)."""
    handles = []
    for name, module in model.named_modules():
        if list(module.children()) or not name:
            continue
        label = "module: " + re.sub(r"^layers\.\d+\.(blocks\.\d+|downsample)\.", "", name)
        ctx: list = []

        def pre(_m, _a, label=label, ctx=ctx):  # type: ignore[no-untyped-def]
            ctx.append(torch.profiler.record_function(label))
            ctx[-1].__enter__()

        def post(_m, _a, _o, ctx=ctx):  # type: ignore[no-untyped-def]
            ctx.pop().__exit__(None, None, None)

        handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    return handles


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=2, help="the paths take turns N times; best of each")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = HTSAT(HTSATConfig(), n_mels=64).eval()
    mel = torch.randn(args.batch, FRAMES_7S, 64) * 20 - 40
    gflop = reference_gflop(model, mel)
    roof = matmul_roof(max(3, args.repeats))
    print(
        f"HTSAT-tiny, batch {args.batch} x 7 s, {args.threads} thread(s): {gflop / args.batch:.2f} GFLOP per clip"
    )
    print(f"2048^2 fp32 matmul roof: {roof:.1f} GFLOP/s")
    chunk_rows = swin_fast.CHUNK_ROWS
    paths = (  # name, fast path, fused linears, chunk rows per thread
        ("fast+fused", True, True, chunk_rows),
        ("fast+fused, unchunked", True, True, 0),
        ("fast", True, False, chunk_rows),
        ("reference", False, False, chunk_rows),
    )
    best: dict[str, tuple[float, float]] = {}
    per_round: dict[str, list[float]] = {}
    with torch.inference_mode():
        for _ in range(args.rounds):  # the paths take turns, so a slow minute does not pick a winner
            for name, fast, fused, rows_per_thread in paths:
                model.set_fast_path(fast)
                swin_fast.FUSED_LINEAR = fused
                swin_fast.CHUNK_ROWS = rows_per_thread
                t, spread = median_seconds(lambda: model(mel), args.repeats)
                per_round.setdefault(name, []).append(t)
                if name not in best or t < best[name][0]:
                    best[name] = (t, spread)
        model.set_fast_path(True)
        swin_fast.FUSED_LINEAR = True
        swin_fast.CHUNK_ROWS = chunk_rows
        t_roof2 = matmul_roof(3)
    rows = [(name, t, spread, gflop / t) for name, (t, spread) in best.items()]
    print(f"{'path':<22} {'ms/clip':>8} {'spread':>7} {'GFLOP/s':>8} {'of roof':>8}")
    for name, t, spread, rate in rows:
        print(
            f"{name:<22} {1000 * t / args.batch:8.1f} {1000 * spread / args.batch:7.1f} {rate:8.1f} {rate / roof:8.1%}"
        )
    print(f"(roof measured again after the runs: {t_roof2:.1f} GFLOP/s)")
    # Paired by round (the two rows ran minutes apart at most), so the VM's drift cancels more than in
    # the best-of columns above.
    gains = [u / c for u, c in zip(per_round["fast+fused, unchunked"], per_round["fast+fused"])]
    print(
        f"chunked vs unchunked, per round: median {statistics.median(gains):.3f}x "
        f"(min {min(gains):.3f}, max {max(gains):.3f}, {len(gains)} rounds)"
    )
    handles = module_labels(model)
    with (
        torch.inference_mode(),
        torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof,
    ):
        model(mel)
    for h in handles:
        h.remove()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    ops = sorted(
        (e for e in events if not e.key.startswith("module: ")), key=lambda e: -e.self_cpu_time_total
    )
    print(f"\nTop operators by self CPU time (fast path, total {total / 1e3:.0f} ms):")
    for e in ops[: args.top]:
        print(
            f"  {e.key:<42} {e.self_cpu_time_total / 1e3:8.1f} ms {e.self_cpu_time_total / total:6.1%}  x{e.count}"
        )
    mods = sorted((e for e in events if e.key.startswith("module: ")), key=lambda e: -e.cpu_time_total)
    print("\nTop modules by CPU time incl. children (summed over stages/blocks):")
    for e in mods[: args.top]:
        print(
            f"  {e.key[8:]:<42} {e.cpu_time_total / 1e3:8.1f} ms {e.cpu_time_total / total:6.1%}  x{e.count}"
        )


if __name__ == "__main__":
    main()
