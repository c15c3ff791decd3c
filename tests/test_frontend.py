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
    if cfg.center:  # numpy's "constant" pads zeros, as torch.stft's pad_mode="constant"
        x = np.pad(x, cfg.n_fft // 2, mode=cfg.pad_mode)
    n_frames = 1 + (len(x) - cfg.n_fft) // cfg.hop_length
    idx = np.arange(cfg.n_fft)[None, :] + cfg.hop_length * np.arange(n_frames)[:, None]
    window = librosa.util.pad_center(signal.get_window("hann", cfg.win_length, fftbins=True), size=cfg.n_fft)
    spec = np.fft.rfft(x[idx] * window, axis=1)
    power = spec.real**2 + spec.imag**2
    fb = librosa.filters.mel(
        sr=cfg.filterbank_sample_rate or cfg.sample_rate,
        n_fft=cfg.n_fft,
        n_mels=cfg.n_mels,
        fmin=cfg.f_min,
        fmax=cfg.f_max,
        htk=cfg.mel_scale == "htk",
        norm=cfg.mel_norm,
        dtype=np.float64,
    )
    db = 10 * np.log10(np.maximum(power @ fb.T, cfg.amin))
    return db if cfg.top_db is None else np.maximum(db, db.max() - cfg.top_db)


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


# Settings the presets above do not use (LAION fusion's HTK filterbank, a window shorter than n_fft, no
# centring, zero padding, top_db), each against the float64 reference on a real clip.
OTHER_SETTINGS = {
    "htk-no-norm": FrontendConfig(
        sample_rate=48000, n_fft=1024, hop_length=480, mel_scale="htk", mel_norm=None
    ),
    "win-1001-of-1024": FrontendConfig(win_length=1001),
    "no-centre": FrontendConfig(center=False),
    "zero-pad": FrontendConfig(pad_mode="constant"),
    "top-db-20": FrontendConfig(top_db=20.0),
}


@pytest.mark.parametrize("name", sorted(OTHER_SETTINGS))
def test_other_settings_match_float64_reference(esc_waves, name):
    cfg = OTHER_SETTINGS[name]
    wave = esc_waves[2][: cfg.sample_rate + 1234]  # about 1 s; the rate only sets the filterbank here
    frontend = LogMelFrontend(cfg)
    got = frontend(torch.from_numpy(wave)[None])[0].numpy().astype(np.float64)
    ref = reference_logmel(wave, cfg)
    assert got.shape == ref.shape == (frontend.num_frames(len(wave)), cfg.n_mels)
    above = ref > -100
    assert above.mean() > 0.5
    np.testing.assert_allclose(got[above], ref[above], rtol=0, atol=1e-4)
    if cfg.top_db is not None:  # the clamp is active: the quietest cells sit exactly top_db below the peak
        assert (
            got.min() == pytest.approx(got.max() - cfg.top_db, abs=1e-4) and (got == got.min()).mean() > 0.01
        )


def test_num_frames_by_hand():
    assert LogMelFrontend(FrontendConfig()).num_frames(44100) == 1 + 44100 // 320  # 138
    assert LogMelFrontend(FrontendConfig(center=False)).num_frames(44100) == 1 + (44100 - 1024) // 320  # 135


def test_hann_window_centred_in_n_fft():
    """A window shorter than n_fft sits in the middle: (n_fft - win) // 2 zeros on the left, the rest right."""
    from openclap.audio.frontend import hann_window

    for win, n_fft in ((1024, 1024), (1001, 1024), (400, 512)):
        ours = hann_window(win, n_fft)
        theirs = librosa.util.pad_center(signal.get_window("hann", win, fftbins=True), size=n_fft)
        assert ours.shape == (n_fft,)
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-15)
    w = hann_window(1001, 1024)
    # 11 zeros of padding, the periodic window's own leading 0, its 1001 - 1 nonzero values, 12 zeros of padding
    assert np.count_nonzero(w[:12]) == 0 and w[12] > 0 and np.count_nonzero(w[-12:]) == 0 and w[-13] > 0


def test_htk_filterbank_equals_librosa_htk():
    """LAION fusion's filterbank: HTK mel scale, peaks at 1 (torchaudio's ``norm=None``; librosa htk=True)."""
    ours = mel_filterbank(48000, 1024, 64, 50.0, 14000.0, mel_scale="htk", norm=None)
    theirs = librosa.filters.mel(
        sr=48000, n_fft=1024, n_mels=64, fmin=50, fmax=14000, htk=True, norm=None, dtype=np.float64
    )
    np.testing.assert_allclose(ours, theirs.T, rtol=0, atol=1e-8)
    assert not np.allclose(ours, mel_filterbank(48000, 1024, 64, 50.0, 14000.0, norm=None), atol=1e-3)


def test_filterbank_arguments_checked():
    ok = mel_filterbank(16000, 512, 8, 0.0, 8000.0)  # f_min 0 and f_max at Nyquist are allowed
    assert ok.shape == (257, 8) and ok[0].sum() == 0.0 and ok[:, -1].max() > 0
    assert mel_filterbank(16000, 1, 1, 0.0, 10.0).shape == (1, 1)  # the smallest sizes are allowed
    for args in ((16000, 512, 0), (16000, 0, 8), (0, 512, 8)):
        with pytest.raises(ValueError, match="need positive sample_rate, n_fft, n_mels"):
            mel_filterbank(*args, 0.0, 100.0)
    for f_min, f_max in ((100.0, 100.0), (-1.0, 100.0), (0.0, 8000.5)):
        with pytest.raises(ValueError, match=r"need 0 <= f_min < f_max <= 8000.0, got"):
            mel_filterbank(16000, 512, 8, f_min, f_max)
    for scale, norm in (("HTK", "slaney"), ("slaney", "area")):
        with pytest.raises(ValueError, match="mel_scale must be 'slaney' or 'htk' and norm"):
            mel_filterbank(16000, 512, 8, 0.0, 8000.0, mel_scale=scale, norm=norm)


def test_compute_dtype_float32_computes_in_float32():
    x = torch.from_numpy(np.random.default_rng(3).standard_normal((1, SR)).astype(np.float32) * 0.1)
    f32, f64 = LogMelFrontend(MSCLAP, compute_dtype=torch.float32), LogMelFrontend(MSCLAP)
    assert f32.window.dtype == f32.mel_fb.dtype == torch.float32 and f64.mel_fb.dtype == torch.float64
    a, b = f32(x), f64(x)
    assert a.dtype == b.dtype == torch.float32
    assert 0 < (a - b).abs().max().item() < 0.1  # float32 round-off, not another computation
    assert torch.equal(f32(x.double()), a)  # a float64 input is computed in float32 too


def test_buffers_follow_the_device():
    frontend = LogMelFrontend().to("meta")
    assert {n: b.device.type for n, b in frontend.named_buffers()} == {"window": "meta", "mel_fb": "meta"}
    assert frontend.mel_fb.dtype == torch.float64 and frontend.mel_fb.shape == (513, 64)


def test_more_bad_input():
    with pytest.raises(TypeError, match="cfg must be a FrontendConfig, got dict"):
        LogMelFrontend({"n_mels": 64})
    with pytest.raises(TypeError, match="wave must be a torch.Tensor, got ndarray"):
        LogMelFrontend()(np.zeros((1, SR), np.float32))
    with pytest.raises(ValueError, match="top_db must be >= 0 dB or None, got -1"):
        LogMelFrontend(FrontendConfig(top_db=-1.0))
    g = torch.Generator().manual_seed(4)
    noise = torch.randn(2, 2000, generator=g) * torch.tensor([[0.5], [1e-3]])
    flat = LogMelFrontend(FrontendConfig(top_db=0.0))(noise)
    assert torch.equal(
        flat, flat.amax(dim=(1, 2), keepdim=True).expand_as(flat)
    )  # top_db 0: every cell = peak
    frontend = LogMelFrontend()
    assert frontend(torch.zeros(1, 513)).shape == (1, 2, 64)  # exactly n_fft // 2 + 1 samples is enough
    with pytest.raises(ValueError, match="has 512 samples; need at least 513 for n_fft=1024"):
        frontend(torch.zeros(1, 512))
    no_centre = LogMelFrontend(FrontendConfig(center=False))
    assert no_centre(torch.zeros(1, 1024)).shape == (1, 1, 64)
    with pytest.raises(ValueError, match=r"need at least 1024 for n_fft=1024 \(center=False\)"):
        no_centre(torch.zeros(1, 1000))
    with pytest.raises(ValueError, match=r"wave has shape|shape \(batch, samples\).*unsqueeze\(0\)"):
        frontend(torch.zeros(SR))
    with pytest.raises(ValueError, match=r"wave is on meta but the front end is on cpu; move one of them"):
        frontend(torch.zeros(1, SR, device="meta"))
