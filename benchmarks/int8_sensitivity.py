"""Which Linear layers hurt accuracy when quantized to int8: one group at a time, then the chosen policy.

    python benchmarks/int8_sensitivity.py [--model msclap-2023] [--clips 8] [--threads 1]

For each group of Linear layers (per stage and role: qkv, proj, fc1, fc2, patch-merging reduction,
projection heads, text blocks), quantizes only that group (dynamic int8, per-channel weights) and prints
the min cosine of the audio (or text) embeddings to fp32 on the bundled demo clips / prompts. Then the
library's policy (``openclap.bulk.speed.quantize_int8``: per-channel, ``INT8_KEEP_FP32`` kept) and the old
one (every Linear, per-tensor) with their speed, measured in the same run. Random weights get trained-like
BatchNorm statistics (the issue's measurement setting); pass ``--model openclap-mini`` for trained weights.
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import openclap
from openclap.bulk.speed import INT8_KEEP_FP32, quantize_int8

DEMO = Path(openclap.__file__).parent / "assets" / "demo"
PROMPTS = [
    f"this is the sound of {w}" for w in ("a dog", "rain", "a violin", "a helicopter", "a clock", "waves")
]


def group_of(name: str) -> str:
    """Group name of a Linear: 'audio stage 2 fc1', 'audio projection', 'text h.3.mlp', ..."""
    m = re.match(r"audio_encoder\.layers\.(\d+)\.blocks\.\d+\.(?:attn|mlp)\.(\w+)", name)
    if m:
        return f"audio stage {m.group(1)} {m.group(2)}"
    m = re.match(r"audio_encoder\.layers\.(\d+)\.downsample\.reduction", name)
    if m:
        return f"audio stage {m.group(1)} reduction"
    if name.startswith("text_encoder."):
        return "text " + re.sub(r"\.\d+\.", ".N.", name.removeprefix("text_encoder.model."))
    return name.rsplit(".", 1)[0]


def timed(fn, repeats: int = 3) -> tuple[float, np.ndarray]:  # type: ignore[no-untyped-def]
    out = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="msclap-2023")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--groups", action="store_true", help="also quantize each group alone (slow)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipeline = openclap.load(args.model, pretrained=False)
    model = pipeline.model
    if args.model != "openclap-mini":
        g = torch.Generator().manual_seed(0)
        for name, m in model.named_modules():  # trained-like statistics (init: mean 0, var 1)
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.running_mean.shape
                scale = (10.0, 300.0) if name.endswith("bn0") else (0.5, 1.5)
                m.running_mean.copy_(
                    torch.randn(n, generator=g) * scale[0] - (40 if name.endswith("bn0") else 0)
                )
                m.running_var.copy_(
                    torch.rand(n, generator=g) * scale[1] + (100 if name.endswith("bn0") else 0.5)
                )
    clips = sorted(p for p in DEMO.iterdir() if p.suffix == ".flac")[: args.clips]
    wave = torch.stack(
        [pipeline._windows(openclap.load_audio(c, pipeline.sample_rate), None)[0][0] for c in clips]
    )
    tokens = pipeline.tokenizer(PROMPTS)

    def embed(m: nn.Module) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            return m.encode_audio(wave).numpy(), m.encode_text(
                tokens["input_ids"], tokens["attention_mask"]
            ).numpy()

    t_fp32, (a32, t32) = timed(lambda: embed(model), 2)
    names = [n for n, m in model.named_modules() if type(m) is nn.Linear and not n.endswith(".head")]
    print(f"{args.model}: {len(clips)} clips, {args.threads} thread(s), {len(names)} Linear layers")
    if args.groups:
        groups: dict[str, list[str]] = {}
        for n in names:
            groups.setdefault(group_of(n), []).append(n)
        print(f"{'group quantized alone':<34} {'audio min cos':>13} {'text min cos':>12}")
        for group, members in groups.items():
            keep = tuple(n for n in names if n not in members)
            q = quantize_int8(model, keep_fp32=tuple(f"^{re.escape(n)}$" for n in keep))
            a, t = embed(q)
            print(f"{group:<34} {(a * a32).sum(1).min():13.6f} {(t * t32).sum(1).min():12.6f}")
    print(f"\n{'policy':<44} {'audio min cos':>13} {'text min cos':>12} {'speed-up':>8}")
    for label, q in (
        ("old: every Linear, per-tensor", quantize_int8(model, keep_fp32=(), per_channel=False)),
        ("every Linear, per-channel", quantize_int8(model, keep_fp32=())),
        (f"per-channel, fp32 kept: {INT8_KEEP_FP32}", quantize_int8(model)),
    ):
        t_q, (a, t) = timed(lambda q=q: embed(q), 2)
        t_fp32_again, _ = timed(lambda: embed(model), 1)
        base = min(t_fp32, t_fp32_again)
        print(f"{label:<44} {(a * a32).sum(1).min():13.6f} {(t * t32).sum(1).min():12.6f} {base / t_q:7.2f}x")


if __name__ == "__main__":
    main()
