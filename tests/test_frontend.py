"""LogMelFrontend against an independent float64 reference (numpy FFT + librosa's mel filterbank)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from openclap.audio.frontend import LogMelFrontend, mel_filterbank
from openclap.audio.io import load_audio
from openclap.config import FrontendConfig

librosa = pytest.importorskip("librosa")
signal = pytest.importorskip("scipy.signal")

SR = 44100
MSCLAP = FrontendConfig(filterbank_sample_rate=32000)  # msclap's HTSAT front end (see frontend.py)


def reference_logmel(x: np.ndarray, cfg: FrontendConfig) -> np.ndarray:
    """(samples,) -> (frames, n_mels) dB, float64, written from the definitions."""
    x = x.astype(np.float64)
    half = cfg.n_fft // 2
    padded = np.pad(x, half, mode="reflect")
    n_frames = 1 + len(x) // cfg.hop_length
    idx = np.arange(cfg.n_fft)[None, :] + cfg.hop_length * np.arange(n_frames)[:, None]
    window = signal.get_window("hann", cfg.win_length, fftbins=True)
    spec = np.fft.rfft(padded[idx] * window, axis=1)
    power = spec.real**2 + spec.imag**2
    fb = librosa.filters.mel(
        sr=cfg.filterbank_sample_rate or cfg.sample_rate,
        n_fft=cfg.n_fft,
        n_mels=cfg.n_mels,
        fmin=cfg.f_min,
        fmax=cfg.f_max,
        htk=False,
        norm="slaney",
        dtype=np.float64,
    )
    return 10 * np.log10(np.maximum(power @ fb.T, cfg.amin))


@pytest.fixture(scope="module")
def esc_waves(shared_data):
    clips = sorted((shared_data / "esc10" / "audio").glob("*.flac"))[::4]  # 8 clips, various classes
    return [load_audio(c, SR) for c in clips]


@pytest.mark.parametrize("cfg", [MSCLAP, FrontendConfig()], ids=["msclap-32k-filterbank", "44k-filterbank"])
def test_matches_float64_reference(esc_waves, cfg):
    frontend = LogMelFrontend(cfg)
    batch = torch.from_numpy(np.stack([w[: 5 * SR] for w in esc_waves]))
    out = frontend(batch)
    assert out.dtype == torch.float32 and out.shape == (len(esc_waves), 1 + 5 * SR // 320, 64)
    for got, wave in zip(out.numpy().astype(np.float64), esc_waves):
        ref = reference_logmel(wave[: 5 * SR], cfg)
        above = (ref > -100) & (got > -100)  # -100 dB is amin
        assert above.mean() > 0.5
        np.testing.assert_allclose(got[above], ref[above], rtol=0, atol=1e-4)


def test_float32_compute_is_close_where_loud(esc_waves):
    # float32 STFT round-off grows in quiet cells (see the module docstring); loud cells stay close
    got = LogMelFrontend(MSCLAP, compute_dtype=torch.float32)(torch.from_numpy(esc_waves[0])[None])[0]
    ref = reference_logmel(esc_waves[0], MSCLAP)
    loud = ref > -40
    np.testing.assert_allclose(got.numpy()[loud], ref[loud], rtol=0, atol=2e-3)


def test_filterbank_equals_librosa():
    for rate in (32000, 44100, 16000):
        ours = mel_filterbank(rate, 1024, 64, 50.0, min(14000.0, rate / 2))
        theirs = librosa.filters.mel(sr=rate, n_fft=1024, n_mels=64, fmin=50, fmax=min(14000, rate / 2))
        assert ours.shape == (513, 64)
        np.testing.assert_allclose(ours, theirs.T, rtol=0, atol=1e-8)


def test_seven_seconds_shape():
    out = LogMelFrontend(MSCLAP)(torch.randn(2, 7 * SR) * 0.1)
    assert out.shape == (2, 965, 64)
    assert LogMelFrontend(MSCLAP).num_frames(7 * SR) == 965


def test_msclap_filterbank_differs_from_44k(esc_waves):
    x = torch.from_numpy(esc_waves[1])[None]
    a, b = LogMelFrontend(MSCLAP)(x), LogMelFrontend(FrontendConfig())(x)
    assert a.shape == b.shape
    assert (a - b).abs().mean() > 1.0  # dB


def test_buffers_not_in_state_dict_and_survive_casts():
    frontend = LogMelFrontend(MSCLAP)
    assert frontend.state_dict() == {}
    reference = frontend.mel_fb.clone()
    frontend.half()
    assert frontend.mel_fb.dtype == torch.float64 and torch.equal(frontend.mel_fb, reference)
    x = torch.randn(1, SR) * 0.1
    assert torch.equal(frontend(x), LogMelFrontend(MSCLAP)(x))


def test_batch_independent_top_db():
    cfg = FrontendConfig(top_db=80.0)
    frontend = LogMelFrontend(cfg)
    loud, quiet = torch.randn(1, SR) * 0.5, torch.randn(1, SR) * 1e-4
    together = frontend(torch.cat([loud, quiet]))
    assert torch.equal(together[1:], frontend(quiet))
    assert (together[0].amax() - together[0].amin()).item() <= 80.0 + 1e-4


def test_bad_input():
    frontend = LogMelFrontend()
    with pytest.raises(ValueError, match=r"\(batch, samples\)"):
        frontend(torch.randn(SR))
    with pytest.raises(ValueError, match="float"):
        frontend(torch.ones(1, SR, dtype=torch.int16))
    with pytest.raises(ValueError, match="at least 513"):
        frontend(torch.randn(1, 100))
    with pytest.raises(ValueError, match="compute_dtype"):
        LogMelFrontend(compute_dtype=torch.float16)


def test_chunked_batch_equals_whole_batch(monkeypatch):
    """The CPU path runs a few clips per call; the output equals one call over the whole batch."""
    g = torch.Generator().manual_seed(0)
    wave = torch.randn(5, 3 * SR, generator=g) * 0.1
    for dtype in (torch.float64, torch.float32):
        frontend = LogMelFrontend(MSCLAP, compute_dtype=dtype)
        monkeypatch.setattr(LogMelFrontend, "cpu_chunk_max_threads", 1 << 10)  # chunk at any thread count
        monkeypatch.setattr(LogMelFrontend, "cpu_chunk_samples", 2 * 3 * SR)  # 2 clips per call
        chunked = frontend(wave)
        monkeypatch.setattr(LogMelFrontend, "cpu_chunk_samples", 1 << 40)  # one call
        whole = frontend(wave)
        assert chunked.shape == (5, 1 + 3 * SR // 320, 64)
        assert torch.equal(chunked, whole)


def test_power_is_re2_plus_im2_bit_for_bit():
    """The front end's power spectrum (real^2 + imag^2) equals view_as_real(...).square().sum(-1) exactly."""
    g = torch.Generator().manual_seed(1)
    spec = torch.stft(
        torch.randn(2, SR, generator=g, dtype=torch.float64),
        1024,
        320,
        return_complex=True,
        window=torch.hann_window(1024, dtype=torch.float64),
    )
    assert torch.equal(spec.real.square() + spec.imag.square(), torch.view_as_real(spec).square().sum(-1))
