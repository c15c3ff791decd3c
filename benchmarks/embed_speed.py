"""Embedding speed of the presets on this machine: clips/s for 7 s clips, files -> embeddings.

    python benchmarks/embed_speed.py [--clips 16] [--models tiny msclap-2023]

Prints a table; the baseline row is the same run with batch size 1.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from _machine import machine_line  # benchmarks/_machine.py (scripts run from benchmarks/)

import openclap


def make_clips(folder: Path, count: int, seconds: float = 7.0, rate: int = 44100) -> list[Path]:
    """Real-looking test clips: seeded noise bursts with a decaying tone (no data needed)."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * rate)) / rate
    paths = []
    for i in range(count):
        wave = 0.1 * rng.standard_normal(len(t)) * np.exp(-t) + 0.3 * np.sin(2 * np.pi * (220 + 40 * i) * t)
        path = folder / f"clip{i:03d}.wav"
        sf.write(path, wave.astype(np.float32), rate)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--models", nargs="+", default=["tiny", "msclap-2023"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8])
    args = parser.parse_args()
    print(machine_line())
    with tempfile.TemporaryDirectory() as tmp:
        clips = make_clips(Path(tmp), args.clips)
        print(f"{'model':<14} {'batch':>5} {'clips/s':>9} {'s/clip':>8}  {'vs batch 1':>10}")
        for name in args.models:
            model = openclap.load(name, pretrained=False)  # random weights: speed does not depend on them
            model.embed_audio(clips[:2])  # warm-up
            base = None
            for bs in args.batch_sizes:
                start = time.perf_counter()
                model.embed_audio(clips, batch_size=bs)
                elapsed = time.perf_counter() - start
                rate = len(clips) / elapsed
                base = base or rate
                print(f"{name:<14} {bs:>5} {rate:>9.2f} {elapsed / len(clips):>8.3f}  {rate / base:>9.2f}x")


if __name__ == "__main__":
    main()
