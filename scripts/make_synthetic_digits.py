"""Spoken digits synthesised with espeak-ng: more voices for openclap-mini, as an extra training manifest.

    python scripts/make_synthetic_digits.py OUT_DIR [--takes 2] [--seed 0] [--jobs 1]

writes ``OUT_DIR/audio/*.flac`` (16 kHz mono, 16-bit, silence trimmed) and ``OUT_DIR/manifest.csv`` in
the shared-data manifest format (``path,caption,label,source_id,split`` + ``speaker,digit,take`` as FSDD,
then ``accent,variant,speed_wpm,pitch``), so a recipe reads it like ``../shared/data/fsdd/manifest.csv``.

Voices: every English accent of espeak-ng's own voices (``espeak-ng --voices=en``, the ``gmw/`` files; the
MBROLA voices need a separate package and are left out) x every voice variant (``espeak-ng
--voices=variant``: male, female, whisper, croak, klatt, ... about 100). A "speaker" is a variant; each
(variant, digit, take) gets an accent, a speed (words per minute) and a pitch (0-99) drawn from a
generator seeded by ``(seed, variant, digit, take)``, so the same arguments give the same files (byte for
byte, with the same espeak-ng and libsndfile).

Split by speaker: the variants in ``--val-variants`` (default: one in five, chosen by a hash of the name)
are ``split: val`` and every clip they speak is held out of training: the synthetic-voice validation
set for digits. The others are ``split: train``. There is no ``test`` split: the project's test splits
stay the real FSDD recordings.

Needs espeak-ng on PATH (Debian/Ubuntu: ``apt-get install -y espeak-ng``).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import shutil
import subprocess
import sys
import wave
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from openclap.audio.io import load_audio

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
RATE = 16000
# captions: FSDD's phrasings without the speaker's sex, and ones naming the synthetic voice
TEMPLATES = (
    "the word {d} spoken in english",
    "a short utterance of the number {d}",
    "a recording of a person saying the digit {d}",
    "someone pronounces the word {d}",
    "the spoken digit {d}",
    "a synthetic voice saying {d}",
    "a computer voice says the number {d}",
)
COLUMNS = [
    "path",
    "caption",
    "label",
    "source_id",
    "split",
    "speaker",
    "digit",
    "take",
    "accent",
    "variant",
    "speed_wpm",
    "pitch",
]


@dataclass(frozen=True)
class Clip:
    """One clip to synthesise: who says which digit, how."""

    variant: str
    digit: int
    take: int
    accent: str
    speed: int
    pitch: int
    caption: str
    split: str

    @property
    def name(self) -> str:
        return f"{self.digit}_{self.variant}_{self.take}.flac"


def _espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SystemExit(
            "espeak-ng not found on PATH; install it (Debian/Ubuntu: apt-get install -y espeak-ng)"
        )
    return exe


def _voice_files(kind: str) -> list[str]:
    """Voice file names from ``espeak-ng --voices=KIND`` (column 5), e.g. ``gmw/en-US`` or ``!v/m3``."""
    out = subprocess.run([_espeak(), f"--voices={kind}"], check=True, capture_output=True, text=True).stdout
    return [line.split()[4] for line in out.splitlines()[1:] if len(line.split()) >= 5]


def english_accents() -> list[str]:
    """espeak-ng's own English voices (language code ``en``...), not the MBROLA ones."""
    out = subprocess.run([_espeak(), "--voices=en"], check=True, capture_output=True, text=True).stdout
    accents = []
    for line in out.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 5 and fields[4].startswith("gmw/") and fields[1].startswith("en"):
            accents.append(fields[1])
    return sorted(set(accents))


def variants() -> list[str]:
    """espeak-ng's voice variants (``+m3``, ``+f2``, ``+whisper``, ...)."""
    return sorted({f.split("/", 1)[1] for f in _voice_files("variant") if f.startswith("!v/")})


def _rng(*parts: object) -> np.random.Generator:
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def default_val_variants(all_variants: list[str], seed: int) -> list[str]:
    """One variant in five, by a hash of its name and the seed (stable when espeak-ng adds variants)."""
    return sorted(v for v in all_variants if _rng("val", seed, v).random() < 0.2)


def plan(
    accents: list[str],
    all_variants: list[str],
    val_variants: list[str],
    takes: int,
    seed: int,
    speeds: tuple[int, int],
    pitches: tuple[int, int],
    digits: tuple[int, ...] = tuple(range(10)),
) -> list[Clip]:
    """Every (variant, digit, take) with its drawn accent, speed, pitch and caption."""
    clips = []
    for variant in all_variants:
        for digit in digits:
            for take in range(takes):
                g = _rng(seed, variant, digit, take)
                accent = accents[int(g.integers(len(accents)))]
                speed = int(g.integers(speeds[0], speeds[1] + 1))
                pitch = int(g.integers(pitches[0], pitches[1] + 1))
                caption = TEMPLATES[int(g.integers(len(TEMPLATES)))].format(d=DIGITS[digit])
                split = "val" if variant in val_variants else "train"
                clips.append(Clip(variant, digit, take, accent, speed, pitch, caption, split))
    return clips


def synthesise(clip: Clip, speed: int | None = None, pitch: int | None = None) -> np.ndarray:
    """The clip's audio: espeak-ng's 22.05 kHz output, silence trimmed, at 16 kHz (float32, mono)."""
    cmd = [
        _espeak(),
        "-v",
        f"{clip.accent}+{clip.variant}",
        "-s",
        str(speed or clip.speed),
        "-p",
        str(clip.pitch if pitch is None else pitch),
        "--stdout",
        DIGITS[clip.digit],
    ]
    data = subprocess.run(cmd, check=True, capture_output=True).stdout
    with wave.open(io.BytesIO(data)) as w:
        rate = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
    return trim(load_audio(pcm, RATE, source_rate=rate, allow_silent=True))


def trim(x: np.ndarray, threshold_db: float = -40.0, pad_s: float = 0.03) -> np.ndarray:
    """Cut leading/trailing silence: keep 10 ms frames within ``threshold_db`` of the loudest, +``pad_s``."""
    hop = RATE // 100
    frames = x[: len(x) // hop * hop].reshape(-1, hop)
    level = 10 * np.log10(np.maximum((frames**2).mean(axis=1), 1e-12))
    loud = np.flatnonzero(level > level.max() + threshold_db)
    if loud.size == 0:
        raise RuntimeError("espeak-ng produced silence")
    pad = int(pad_s * RATE)
    return x[max(0, loud[0] * hop - pad) : min(len(x), (loud[-1] + 1) * hop + pad)]


def write_clip(clip: Clip, folder: Path) -> None:
    """Synthesise one clip and write it as 16-bit FLAC."""
    sf.write(folder / clip.name, synthesise(clip), RATE, subtype="PCM_16", format="FLAC")


def main(argv: list[str] | None = None) -> int:
    """Generate the clips and the manifest; print a summary line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="output folder (audio/ and manifest.csv are written here)")
    p.add_argument("--takes", type=int, default=2, help="clips per (variant, digit) (default: 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--accents", nargs="+", help="espeak-ng English voices (default: all, espeak-ng --voices=en)"
    )
    p.add_argument("--variants", nargs="+", help="voice variants (default: all, espeak-ng --voices=variant)")
    p.add_argument(
        "--val-variants", nargs="*", help="variants held out as split 'val' (default: 1 in 5 by hash)"
    )
    p.add_argument(
        "--speeds",
        type=int,
        nargs=2,
        default=(110, 230),
        metavar=("LOW", "HIGH"),
        help="words per minute, uniform (default: 110 230; espeak-ng's default is 175)",
    )
    p.add_argument(
        "--pitches",
        type=int,
        nargs=2,
        default=(20, 80),
        metavar=("LOW", "HIGH"),
        help="espeak-ng pitch 0-99, uniform (default: 20 80)",
    )
    p.add_argument(
        "--digits", type=int, nargs="+", default=list(range(10)), help="digits to speak (default: 0-9)"
    )
    p.add_argument(
        "--jobs", type=int, default=1, help="espeak-ng processes at once (the machine may be shared)"
    )
    args = p.parse_args(argv)
    accents = args.accents or english_accents()
    all_variants = sorted(args.variants or variants())
    known = set(variants())
    unknown = [v for v in all_variants if v not in known]
    if unknown:
        raise SystemExit(f"unknown espeak-ng variants {unknown}; see espeak-ng --voices=variant")
    val = (
        args.val_variants if args.val_variants is not None else default_val_variants(all_variants, args.seed)
    )
    clips = plan(
        accents,
        all_variants,
        val,
        args.takes,
        args.seed,
        tuple(args.speeds),
        tuple(args.pitches),
        tuple(sorted(set(args.digits))),
    )
    audio = args.out / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        list(pool.map(lambda c: write_clip(c, audio), clips))
    with open(args.out / "manifest.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(COLUMNS)
        for c in clips:
            w.writerow(
                [
                    f"audio/{c.name}",
                    c.caption,
                    DIGITS[c.digit],
                    f"espeak:{c.variant}",
                    c.split,
                    c.variant,
                    c.digit,
                    c.take,
                    c.accent,
                    c.variant,
                    c.speed,
                    c.pitch,
                ]
            )
    n_val = sum(c.split == "val" for c in clips)
    print(
        f"{len(clips)} clips ({len(clips) - n_val} train, {n_val} val from variants {', '.join(val)}) "
        f"in {args.out}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
