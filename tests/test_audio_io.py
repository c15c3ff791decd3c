"""openclap.audio.io on real recordings and on deliberately broken files."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from openclap.audio.io import (
    AudioFileNotFoundError,
    AudioInfo,
    AudioLoadError,
    audio_info,
    iter_audio_blocks,
    load_audio,
    supported_formats,
)

SR = 44100


@pytest.fixture(scope="module")
def esc_clip(shared_data):
    return min((shared_data / "esc10" / "audio").glob("*.flac"))


@pytest.mark.parametrize(
    "subset, rate",
    [("fsdd/audio", 8000), ("esc10/audio", 16000), ("instruments/audio/fluidr3", 16000)],
)
def test_real_flac_resampled_to_44100(shared_data, subset, rate):
    path = min((shared_data / subset).glob("*.flac"))
    info = audio_info(path)
    assert isinstance(info, AudioInfo)
    assert (info.sample_rate, info.channels, info.format) == (rate, 1, "FLAC")
    assert info.duration == pytest.approx(info.frames / rate)
    wave = load_audio(path, SR)
    assert wave.dtype == np.float32 and wave.ndim == 1 and wave.flags.c_contiguous
    assert len(wave) == pytest.approx(info.frames * SR / rate, abs=1)
    assert 0 < np.abs(wave).max() <= 1.01


def test_same_rate_is_bit_exact(esc_clip):
    raw, rate = sf.read(esc_clip, dtype="float32")
    np.testing.assert_array_equal(load_audio(esc_clip, rate), raw)


def test_stereo_file_is_channel_average(tmp_path, shared_data):
    a = load_audio(min((shared_data / "esc10" / "audio").glob("*.flac")), 16000)
    b = load_audio(sorted((shared_data / "esc10" / "audio").glob("*.flac"))[1], 16000)
    n = min(len(a), len(b))
    stereo = np.stack([a[:n], b[:n]], axis=1)  # (frames, channels), soundfile's layout
    path = tmp_path / "stereo.wav"
    sf.write(path, stereo, 16000, subtype="FLOAT")
    assert audio_info(path).channels == 2
    np.testing.assert_allclose(load_audio(path, 16000), (a[:n] + b[:n]) / 2, atol=1e-7)
    # the same through the array path, channels first
    np.testing.assert_allclose(load_audio(stereo.T, 16000, source_rate=16000), (a[:n] + b[:n]) / 2, atol=1e-7)


def test_int16_wav_normalised(tmp_path):
    pcm = np.array([0, 16384, -16384, 32767, -32768] * 100, dtype=np.int16)
    path = tmp_path / "int16.wav"
    sf.write(path, pcm, 8000, subtype="PCM_16")
    wave = load_audio(path, 8000)
    np.testing.assert_allclose(wave, pcm / 32768.0, atol=1e-7)
    # int16 arrays are scaled the same way
    np.testing.assert_allclose(load_audio(pcm, 8000, source_rate=8000), pcm / 32768.0, atol=1e-7)


def test_array_and_tensor_input(esc_clip):
    from_file = load_audio(esc_clip, SR)
    raw, rate = sf.read(esc_clip, dtype="float32")
    np.testing.assert_array_equal(load_audio(raw, SR, source_rate=rate), from_file)
    np.testing.assert_array_equal(load_audio(torch.from_numpy(raw), SR, source_rate=rate), from_file)
    np.testing.assert_array_equal(load_audio(raw[None, :], SR, source_rate=rate), from_file)


def test_array_input_errors():
    x = np.ones(100, dtype=np.float32)
    with pytest.raises(ValueError, match="source_rate is required"):
        load_audio(x, SR)
    with pytest.raises(AudioLoadError, match="channels first"):
        load_audio(np.ones((1000, 2), np.float32), SR, source_rate=SR)
    with pytest.raises(AudioLoadError, match="NaN"):
        load_audio(np.full(100, np.nan, np.float32), SR, source_rate=SR)
    with pytest.raises(AudioLoadError, match="silent"):
        load_audio(np.zeros(100, np.float32), SR, source_rate=SR)
    assert load_audio(np.zeros(100, np.float32), SR, source_rate=SR, allow_silent=True).shape == (100,)
    with pytest.raises(AudioLoadError, match="0 frames"):
        load_audio(np.zeros(0, np.float32), SR, source_rate=SR)
    with pytest.raises(TypeError):
        load_audio([0.1, 0.2], SR, source_rate=SR)  # type: ignore[arg-type]


def _assert_names_file(exc_info, path):
    assert path.name in str(exc_info.value)
    assert exc_info.value.path == str(path)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.wav"
    with pytest.raises(AudioFileNotFoundError) as exc_info:
        load_audio(path, SR)
    assert isinstance(exc_info.value, FileNotFoundError) and isinstance(exc_info.value, AudioLoadError)
    _assert_names_file(exc_info, path)


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioLoadError, match="0 bytes") as exc_info:
        load_audio(path, SR)
    _assert_names_file(exc_info, path)


def test_zero_frame_file(tmp_path):
    path = tmp_path / "noframes.wav"
    sf.write(path, np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioLoadError, match="0 frames") as exc_info:
        load_audio(path, SR)
    _assert_names_file(exc_info, path)


def test_random_bytes_named_wav(tmp_path):
    path = tmp_path / "garbage.wav"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(AudioLoadError, match="not recognised") as exc_info:
        load_audio(path, SR)
    _assert_names_file(exc_info, path)
    # named .wav, so a broken recording (a failure), not "not audio"; both decoders were tried
    assert (
        exc_info.value.kind is None
        and "libsndfile" in str(exc_info.value)
        and "FFmpeg" in str(exc_info.value)
    )
    assert "FLAC" in supported_formats()


def test_truncated_flac(tmp_path, esc_clip):
    # libsndfile reports a cut FLAC as "flac decoder lost sync" when reading; it must surface as an
    # AudioLoadError naming the file, from both the whole-file and the streaming path.
    path = tmp_path / "cut.flac"
    data = esc_clip.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioLoadError, match="corrupt or truncated") as exc_info:
        load_audio(path, SR)
    _assert_names_file(exc_info, path)
    with pytest.raises(AudioLoadError, match="corrupt or truncated"):
        list(iter_audio_blocks(path, SR, 1.0))


def test_all_zero_file(tmp_path):
    path = tmp_path / "silence.flac"
    sf.write(path, np.zeros(16000, np.int16), 16000)
    with pytest.raises(AudioLoadError, match="silent") as exc_info:
        load_audio(path, SR)
    _assert_names_file(exc_info, path)
    assert np.all(load_audio(path, SR, allow_silent=True) == 0)
    with pytest.raises(AudioLoadError, match="silent"):
        list(iter_audio_blocks(path, SR, 0.25))


def test_nan_file(tmp_path):
    path = tmp_path / "nan.wav"
    x = np.full(1600, np.nan, np.float32)
    sf.write(path, x, 16000, subtype="FLOAT")
    with pytest.raises(AudioLoadError, match="NaN") as exc_info:
        load_audio(path, SR)
    _assert_names_file(exc_info, path)


def test_rate_arguments(esc_clip):
    with pytest.raises(ValueError, match="sample_rate"):
        load_audio(esc_clip, 0)
    with pytest.raises(ValueError, match="source_rate"):
        load_audio(esc_clip, SR, source_rate=16000)


def test_iter_audio_blocks_matches_load_audio(tmp_path, shared_data):
    clips = sorted((shared_data / "esc10" / "audio").glob("*.flac"))[:6]  # 30 s of real audio
    long = np.concatenate([sf.read(c, dtype="float32")[0] for c in clips])
    path = tmp_path / "long.flac"
    sf.write(path, long, 16000, subtype="PCM_16")
    whole = load_audio(path, SR)
    blocks = list(iter_audio_blocks(path, SR, 2.0))
    assert all(len(b) == 2 * SR for b in blocks[:-1]) and 0 < len(blocks[-1]) <= 2 * SR
    assert all(b.dtype == np.float32 and b.ndim == 1 for b in blocks)
    streamed = np.concatenate(blocks)
    assert len(streamed) == len(whole)
    np.testing.assert_allclose(streamed, whole, atol=1e-5)


def test_iter_audio_blocks_same_rate_and_stereo(tmp_path, esc_clip):
    raw, rate = sf.read(esc_clip, dtype="float32")
    path = tmp_path / "st.wav"
    sf.write(path, np.stack([raw, -raw * 0.5], axis=1), rate, subtype="FLOAT")
    streamed = np.concatenate(list(iter_audio_blocks(path, rate, 0.3)))
    np.testing.assert_allclose(streamed, load_audio(path, rate), atol=1e-7)
    with pytest.raises(ValueError, match="block_seconds"):
        next(iter_audio_blocks(path, rate, 0))


def test_audio_info_errors(tmp_path):
    with pytest.raises(AudioFileNotFoundError):
        audio_info(tmp_path / "missing.flac")
    with pytest.raises(AudioLoadError, match="directory"):
        load_audio(tmp_path, SR)
