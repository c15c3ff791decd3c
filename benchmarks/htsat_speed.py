"""CPU time of HTSAT-tiny (msclap-2023 sizes) per stage, and of the log-mel front end in float32 vs float64.

    python benchmarks/htsat_speed.py [--batch 8] [--repeats 5] [--threads 1] [--chunk-rows 4096]

Random weights, 7 s clips at 44.1 kHz (965 frames x 64 mels). Times are process CPU time
(``time.process_time``) per clip, so other jobs on a shared machine disturb them less than wall time;
with ``--threads 1`` CPU time equals the work done. Each line reports the median and the minimum over
``--repeats`` runs after one warm-up. ``--chunk-rows 0`` turns off the chunked inference path of the Swin
blocks (``swin_fast.CHUNK_ROWS``) for comparison.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from openclap.audio import swin_fast
from openclap.audio.frontend import LogMelFrontend
from openclap.audio.htsat import HTSAT
from openclap.config import FrontendConfig, HTSATConfig


def stage_times(model: HTSAT, mel: torch.Tensor) -> dict[str, float]:
    """CPU seconds of one forward, split into bn0 + image fold + patch embed, each stage, and the head."""
    marks: list[tuple[str, float]] = []
    hooks = [
        model.patch_embed.register_forward_hook(
            lambda *_: marks.append(("input + patch embed", time.process_time()))
        )
    ]
    for i, stage in enumerate(model.layers):
        name = f"stage {i} ({len(stage.blocks)} blocks{', merge' if stage.downsample is not None else ''})"
        hooks.append(stage.register_forward_hook(lambda *_, n=name: marks.append((n, time.process_time()))))
    try:
        start = time.process_time()
        model(mel)
        end = time.process_time()
    finally:
        for h in hooks:
            h.remove()
    out, last = {}, start
    for name, t in marks:
        out[name], last = t - last, t
    out["norm + tscam head"] = end - last
    out["total"] = end - start
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--chunk-rows", type=int, default=swin_fast.CHUNK_ROWS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    swin_fast.CHUNK_ROWS = args.chunk_rows
    torch.manual_seed(0)
    model = HTSAT(HTSATConfig(), n_mels=64).eval()
    g = torch.Generator().manual_seed(0)
    wave = torch.randn(args.batch, 7 * 44100, generator=g) * 0.1
    cfg = FrontendConfig(filterbank_sample_rate=32000)  # msclap-2023's front end
    frontends = {
        "front end float64 (default)": LogMelFrontend(cfg),
        "front end float32": LogMelFrontend(cfg, compute_dtype=torch.float32),
    }
    runs: dict[str, list[float]] = {}
    with torch.inference_mode():
        mel = frontends["front end float64 (default)"](wave)
        print(
            f"HTSAT-tiny, batch {args.batch} x {mel.shape[1]} frames x {mel.shape[2]} mels, "
            f"{torch.get_num_threads()} thread(s), chunk_rows {swin_fast.CHUNK_ROWS}, {args.repeats} repeats"
        )
        model(mel)  # warm-up
        for fe in frontends.values():
            fe(wave)
        for _ in range(args.repeats):
            for name, seconds in stage_times(model, mel).items():
                runs.setdefault(name, []).append(seconds)
            for name, fe in frontends.items():
                start = time.process_time()
                fe(wave)
                runs.setdefault(name, []).append(time.process_time() - start)
    total = statistics.median(runs["total"])
    print(f"{'part':36s} {'median ms/clip':>15s} {'min ms/clip':>12s} {'share':>7s}")
    for name, values in runs.items():
        med, low = statistics.median(values) / args.batch, min(values) / args.batch
        share = f"{100 * statistics.median(values) / total:6.1f}%" if not name.startswith("front") else ""
        print(f"{name:36s} {med * 1000:15.1f} {low * 1000:12.1f} {share:>7s}")
    f64 = statistics.median(runs["front end float64 (default)"])
    print(
        f"front end float64 + encoder: {(f64 + total) / args.batch * 1000:.1f} ms/clip; "
        f"the float64 front end is {100 * f64 / (f64 + total):.1f} % of it"
    )


if __name__ == "__main__":
    main()
