"""Held-out timbre variants of instrument notes: validation that asks "would it know another sample library?".

    python scripts/make_timbre_variants.py OUT_DIR [--recipe configs/openclap-mini.yaml] [--val instruments-val]
                                           [--variants 3] [--seed 0]

Reads the notes of the recipe's validation set ``--val`` (openclap-mini: the 49 FluidR3 notes held out of
training; never a test split) and writes ``--variants`` versions of each to ``OUT_DIR/audio/`` (16 kHz
FLAC) with ``OUT_DIR/manifest.csv`` (the source manifest's columns, ``split: val``, plus ``source_path``
and the variant's parameters). Each variant passes the note through a chain that the trainer's
augmentation (``openclap_train.augment``) does not contain, so a model cannot score well here by having
learnt the augmentation itself:

* **pitch shift** of 2-4 semitones up or down (resampling: factor 0.79-0.89 or 1.12-1.26; the trainer's
  ``speed_range`` stays inside 0.9-1.1);
* **body resonances**: three peaking filters (the RBJ audio-EQ-cookbook peaking response, zero phase) at
  200-5000 Hz, Q 1-4, +-4 to +-10 dB: a different instrument body or microphone, where the trainer's EQ is
  a smooth six-band tilt;
* **a Schroeder reverberator** (four parallel combs, two allpasses; Schroeder 1962), RT60 0.3-1.5 s,
  20-50 % wet: sparse, periodic echoes, where the trainer's rooms are decaying noise.

Parameters come from a generator seeded by ``(seed, source path, variant)``: same arguments, same files.
Only the notes in ``../shared/data`` are used (FluidR3 renders): no other sound font or sample library.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import math
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from openclap.audio.io import load_audio
from openclap_train.augment import apply_reverb, change_speed, spectral_filter
from openclap_train.config import load_config

RATE = 16000


def _rng(*parts: object) -> np.random.Generator:
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def peaking_response(freqs: torch.Tensor, rate: int, centre: float, q: float, gain_db: float) -> torch.Tensor:
    """|H(f)| of the RBJ cookbook peaking EQ biquad (gain ``gain_db`` at ``centre``, bandwidth by ``q``)."""
    a = 10.0 ** (gain_db / 40)
    w0 = 2 * math.pi * centre / rate
    alpha = math.sin(w0) / (2 * q)
    b = (1 + alpha * a, -2 * math.cos(w0), 1 - alpha * a)
    d = (1 + alpha / a, -2 * math.cos(w0), 1 - alpha / a)
    z = torch.exp(-1j * 2 * math.pi * freqs.to(torch.float64) / rate)  # e^{-jw}
    num = b[0] + b[1] * z + b[2] * z**2
    den = d[0] + d[1] * z + d[2] * z**2
    return (num / den).abs()


def schroeder_ir(rate: int, rt60: float, seconds: float | None = None) -> np.ndarray:
    """Impulse response of a Schroeder reverberator: 4 parallel feedback combs (delays 29.7-43.7 ms, gains
    for ``rt60``) into 2 series allpasses (5 ms / 1.7 ms, gain 0.7)."""
    n = int(rate * (seconds or rt60))
    ir = np.zeros(n)
    for delay_ms in (29.7, 37.1, 41.1, 43.7):  # comb y[n] = x[n - d] + g y[n - d]: h[k d] = g^(k - 1), k >= 1
        d = int(rate * delay_ms / 1000)
        g = 10.0 ** (-3 * d / (rate * rt60))  # -60 dB after rt60 seconds
        taps = np.arange(d, n, d)
        ir[taps] += g ** np.arange(len(taps)) / 4
    for delay_ms, g in ((5.0, 0.7), (1.7, 0.7)):  # allpass: h[0] = -g, h[k d] = (1 - g^2) g^(k - 1)
        d = int(rate * delay_ms / 1000)
        ap = np.zeros(n)
        ap[0] = -g
        taps = np.arange(d, n, d)
        ap[taps] = (1 - g * g) * g ** np.arange(len(taps))
        size = 1 << (2 * n - 1).bit_length()
        ir = np.fft.irfft(np.fft.rfft(ir, size) * np.fft.rfft(ap, size), size)[:n]
    return ir


def variant(wave: np.ndarray, g: np.random.Generator) -> tuple[np.ndarray, dict[str, object]]:
    """One timbre variant of a note and the parameters drawn for it."""
    semitones = float(g.uniform(2, 4)) * (1 if g.random() < 0.5 else -1)
    x = change_speed(torch.from_numpy(wave), RATE, 2 ** (semitones / 12))
    peaks = [
        (
            float(np.exp(g.uniform(np.log(200), np.log(5000)))),
            float(g.uniform(1, 4)),
            float(g.uniform(4, 10)) * (1 if g.random() < 0.5 else -1),
        )
        for _ in range(3)
    ]

    def response(freqs: torch.Tensor) -> torch.Tensor:
        r = torch.ones_like(freqs)
        for centre, q, gain in peaks:
            r = r * peaking_response(freqs, RATE, centre, q, gain)
        return r

    x = spectral_filter(x, RATE, response)
    rt60, wet = float(g.uniform(0.3, 1.5)), float(g.uniform(0.2, 0.5))
    ir = np.zeros(int(RATE * rt60))
    ir[0] = 1 - wet
    ir += wet * schroeder_ir(RATE, rt60)
    x = apply_reverb(x, torch.from_numpy(ir).float())
    peak = float(x.abs().max())
    x = x * (0.9 / peak) if peak > 0.9 else x  # keep it inside 16-bit full scale
    params = {
        "semitones": round(semitones, 3),
        "peaks": ";".join(f"{c:.0f}Hz/q{q:.2f}/{gn:+.1f}dB" for c, q, gn in peaks),
        "rt60": round(rt60, 3),
        "wet": round(wet, 3),
    }
    return x.numpy(), params


def main(argv: list[str] | None = None) -> int:
    """Write the variants and their manifest."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument(
        "--recipe", default="configs/openclap-mini.yaml", help="training recipe naming the held-out notes"
    )
    p.add_argument("--val", default="instruments-val", help="the recipe's validation set to vary (its name)")
    p.add_argument("--variants", type=int, default=3, help="variants per note (default: 3)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from openclap_train.data import read_manifest

    recipe = load_config(args.recipe)
    specs = [s for s in recipe.val_manifest if s.display_name == args.val]
    if not specs:
        raise SystemExit(
            f"{args.recipe} has no validation set named {args.val!r} "
            f"(it has {[s.display_name for s in recipe.val_manifest]})"
        )
    spec = specs[0]
    if spec.split == "test":
        raise SystemExit(f"{args.val} reads the test split; timbre variants are validation, never test")
    keep = {str(Path(s.path).resolve()) for s in read_manifest(spec)}
    source = Path(spec.path).resolve()
    with open(source, newline="") as f:
        rows = [r for r in csv.DictReader(f) if str((source.parent / r["path"]).resolve()) in keep]
    audio = args.out / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    out_rows = []
    for row in rows:
        path = (source.parent / row["path"]).resolve()
        wave = load_audio(path, RATE)
        for k in range(args.variants):
            x, params = variant(wave, _rng(args.seed, row["path"], k))
            name = f"{path.stem}_tv{k}.flac"
            sf.write(audio / name, x, RATE, subtype="PCM_16", format="FLAC")
            out_rows.append(
                {**row, "path": f"audio/{name}", "split": "val", "source_path": str(path), **params}
            )
    with open(args.out / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(out_rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(out_rows)
    print(f"{len(out_rows)} variants of {len(rows)} notes of {args.val} in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
