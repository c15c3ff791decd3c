"""The decode budget of openclap.audio.io: what a header may announce, checked before decoding, and
block decoding that stays within it when a header leaves the length open."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from openclap.audio import io as audio_io
from openclap.audio.io import (
    DEFAULT_DECODE_BUDGET,
    AudioLoadError,
    AudioTooLargeError,
    DecodeBudget,
    iter_audio_blocks,
    load_audio,
)


def _write(path, wave: np.ndarray, rate: int) -> None:
    sf.write(path, wave, rate, format="FLAC", subtype="PCM_16")


def _open_length_flac(path, wave: np.ndarray, rate: int) -> None:
    """A FLAC whose STREAMINFO says 'total samples unknown' (as a streamed encoder writes it)."""
    _write(path, wave, rate)
    data = bytearray(path.read_bytes())
    at = 8 + 10  # "fLaC", block header, then min/max block and frame sizes (10 bytes)
    head = int.from_bytes(data[at : at + 8], "big")  # rate 20 bits, channels 3, bits 5, total 36
    data[at : at + 8] = (head & ~((1 << 36) - 1)).to_bytes(8, "big")
    path.write_bytes(bytes(data))


def _ramp(frames: int, channels: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.uniform(-0.5, 0.5, (frames, channels))).astype(np.float32)


def test_rate_outside_range_is_refused_before_decoding(tmp_path):
    path = tmp_path / "ultra.flac"
    _write(path, np.full((6554, 8), 0.25, np.float32), 655_350)  # FLAC's highest rate
    with pytest.raises(AudioLoadError, match="655350 Hz, outside the accepted 1000-384000 Hz") as err:
        load_audio(path, 16000)
    assert not isinstance(err.value, AudioTooLargeError) and err.value.path == str(path)
    with pytest.raises(AudioLoadError, match="655350 Hz"):
        next(iter_audio_blocks(path, 16000, 1.0))
    wide = DecodeBudget(max_rate=700_000)
    assert load_audio(path, 16000, budget=wide).shape == (160,)


def test_budget_counts_frames_times_channels(tmp_path):
    path = tmp_path / "eight.flac"
    _write(path, _ramp(1000, 8), 8000)
    with pytest.raises(AudioTooLargeError, match="1000 frames x 8 channels = 8000 samples"):
        load_audio(path, 8000, budget=DecodeBudget(max_samples=7999))
    assert load_audio(path, 8000, budget=DecodeBudget(max_samples=8000)).shape == (1000,)
    with pytest.raises(AudioTooLargeError, match="0.1 s limit"):
        load_audio(path, 8000, budget=DecodeBudget(max_seconds=0.1))
    assert DEFAULT_DECODE_BUDGET.max_samples == 1 << 29


def test_block_decoding_equals_one_read(tmp_path, monkeypatch):
    path = tmp_path / "stereo.flac"
    wave = _ramp(5003, 3, seed=1)
    _write(path, wave, 8000)
    ref = sf.read(path, dtype="float32")[0].mean(axis=1, dtype=np.float64).astype(np.float32)
    monkeypatch.setattr(audio_io, "_BLOCK_SAMPLES", 1000)  # 333 frames a block: 16 blocks, a short last one
    np.testing.assert_array_equal(load_audio(path, 8000), ref)


def test_open_length_header_stops_at_the_budget(tmp_path, monkeypatch):
    path = tmp_path / "open.flac"
    _open_length_flac(path, _ramp(4000, 2, seed=2), 8000)
    assert sf.info(str(path)).frames >= 1 << 62  # libsndfile: length unknown, so no header check can bite
    monkeypatch.setattr(audio_io, "_BLOCK_SAMPLES", 1000)  # 500 frames a block
    # The decoder stops at the budget (3000 frames x 2 channels) instead of reading the whole file.
    with pytest.raises(AudioTooLargeError, match="more than 3000 frames x 2 channels"):
        load_audio(path, 8000, budget=DecodeBudget(max_samples=6000))
    # Within budget, libsndfile cannot read such a file to its end: a clear error, not a crash.
    with pytest.raises(AudioLoadError, match="open.flac"):
        load_audio(path, 8000)
