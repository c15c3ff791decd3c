"""Decode speed of openclap's two decoders: soundfile (libsndfile) and PyAV (FFmpeg), side by side.

    python benchmarks/decode_speed.py [--files 8] [--seconds 30] [--repeats 3]

Makes ``--files`` stereo 44.1 kHz recordings of ``--seconds`` each from the bundled demo clips (mixed
and resampled), writes each as WAV (PCM 16), FLAC, MP3 (128 kb/s), M4A (AAC 128 kb/s) and Opus
(96 kb/s, 48 kHz; WAV and FLAC by soundfile, the others by FFmpeg's encoders), then decodes every file
to float32 with each decoder that reads its format (best of ``--repeats`` passes over all files) and
prints files/s, MB/s of file read and seconds of audio per second. The "openclap" column says which
decoder ``load_audio`` uses for that format (libsndfile first where it can). Decoding only: no downmix
or resampling (those are the same code for both).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

import openclap
from openclap.audio.ffmpeg import FFmpegFile, encode_file

RATE = 44100
# format -> (file name, writer): writer(path, wave (2, n) int16)
FORMATS = {
    "WAV": ("x.wav", lambda p, w: sf.write(p, w.T, RATE, subtype="PCM_16")),
    "FLAC": ("x.flac", lambda p, w: sf.write(p, w.T, RATE, subtype="PCM_16")),
    "MP3": ("x.mp3", lambda p, w: encode_file(p, w, RATE, "libmp3lame", "mp3", bit_rate=128_000)),
    "M4A": ("x.m4a", lambda p, w: encode_file(p, w, RATE, "aac", "ipod", bit_rate=128_000)),
    "Opus": (
        "x.opus",
        lambda p, w: encode_file(p, w, RATE, "libopus", "opus", codec_rate=48000, bit_rate=96_000),
    ),
}


def make_waves(count: int, seconds: float) -> list[np.ndarray]:
    """``count`` different (2, seconds * 44100) int16 recordings built from the demo clips."""
    demo = sorted((Path(openclap.__file__).parent / "assets" / "demo").glob("4-*.flac"))
    clips = [soxr.resample(sf.read(p, dtype="float32")[0], 16000, RATE) for p in demo]
    rng = np.random.default_rng(0)
    n = round(seconds * RATE)
    waves = []
    for _ in range(count):
        chans = []
        for _ in range(2):
            order = rng.permutation(len(clips))
            x = np.concatenate([clips[i] for i in np.resize(order, n // len(clips[0]) + 1)])[:n]
            chans.append(x)
        w = np.stack(chans) * 0.5
        waves.append(np.round(w / max(1e-6, np.abs(w).max()) * 0.9 * 32767).astype(np.int16))
    return waves


def decode_soundfile(path: Path) -> int:
    with sf.SoundFile(str(path)) as f:
        f.seek(0)
        return len(f.read(dtype="float32", always_2d=True))


def decode_pyav(path: Path) -> int:
    with FFmpegFile(path, str(path)) as f:
        return len(f.read())


def soundfile_reads(path: Path) -> bool:
    try:
        sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError):
        return False
    return True


def time_decoder(decode, files: list[Path], repeats: int) -> float:
    """Best wall time of ``repeats`` passes decoding every file."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for p in files:
            decode(p)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    waves = make_waves(args.files, args.seconds)
    audio_seconds = args.files * args.seconds
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, (name, write) in FORMATS.items():
            files = []
            for i, w in enumerate(waves):
                path = Path(tmp) / f"{i}_{name}"
                write(path, w)
                files.append(path)
            mb = sum(p.stat().st_size for p in files) / 1e6
            chosen = "soundfile" if soundfile_reads(files[0]) else "PyAV"  # load_audio's rule
            for decoder, fn in (("soundfile", decode_soundfile), ("PyAV", decode_pyav)):
                if decoder == "soundfile" and not soundfile_reads(files[0]):
                    rows.append((fmt, decoder, None, None, None, mb / args.files, ""))
                    continue
                fn(files[0])  # warm-up (library loading)
                t = time_decoder(fn, files, args.repeats)
                rows.append(
                    (
                        fmt,
                        decoder,
                        args.files / t,
                        mb / t,
                        audio_seconds / t,
                        mb / args.files,
                        "yes" if decoder == chosen else "",
                    )
                )
    print(
        f"{args.files} files x {args.seconds:g} s stereo 44.1 kHz per format, decode to float32, "
        f"best of {args.repeats}\n"
    )
    print("| format | decoder | files/s | MB/s | audio s/s | MB/file | openclap uses |")
    print("|---|---|---:|---:|---:|---:|---|")
    for fmt, decoder, fps, mbps, xrt, size, used in rows:
        if fps is None:
            print(f"| {fmt} | {decoder} | cannot read | | | {size:.2f} | |")
        else:
            print(f"| {fmt} | {decoder} | {fps:.1f} | {mbps:.1f} | {xrt:.0f} | {size:.2f} | {used} |")


if __name__ == "__main__":
    main()
