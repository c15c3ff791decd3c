"""Log-mel front end: waveform -> (frames, n_mels) log power in dB.

:class:`LogMelFrontend` reproduces the front end of msclap's HTSAT, which is torchlibrosa's
``Spectrogram(n_fft=1024, hop_length=320, win_length=1024, window="hann", center=True, pad_mode="reflect")``
followed by ``LogmelFilterBank(sr=32000, n_fft=1024, n_mels=64, fmin=50, fmax=14000, ref=1.0, amin=1e-10,
top_db=None)`` (values from msclap's ``htsat.py``; torchlibrosa builds the filterbank with
``librosa.filters.mel``, i.e. Slaney mel scale with Slaney area normalisation). The steps:

1. reflect-pad ``n_fft // 2`` samples on each side (``center=True``), frames every ``hop_length``;
2. periodic Hann window (``scipy.signal.get_window("hann", win_length, fftbins=True)``), centred in
   ``n_fft`` when ``win_length < n_fft``;
3. power spectrum ``re^2 + im^2`` of the one-sided FFT, ``n_fft // 2 + 1`` bins;
4. mel filterbank designed for ``filterbank_sample_rate or sample_rate``;
5. ``10 * log10(max(x, amin))`` (``ref = 1.0``), optionally clamped to ``top_db`` below the maximum.

msclap quirk (kept in the ``msclap-*`` presets, as the weights depend on it): the filterbank is designed
for 32 kHz while the STFT runs on 44.1 kHz audio, so mel band edges land at 44.1/32 times their nominal
frequency (50 Hz -> 69 Hz, 14 kHz -> 19.3 kHz).

Numerics: torchlibrosa computes the STFT as a float32 ``conv1d`` with DFT kernels. Any float32 STFT
(conv or FFT) carries round-off of roughly 1e-7 of a frame's peak amplitude, which shows up in quiet mel
cells. Measured on all 318 ESC-10 clips resampled to 44.1 kHz, against a float64 reference (numpy FFT,
``librosa.filters.mel``), max |error| in dB over cells above the given level:

    compute dtype   > -40 dB   > -60 dB   > -90 dB   > -100 dB (amin)
    float32 (FFT)   2.8e-4     1.7e-3     1.6e-2     6.9e-2
    float64         1.9e-6     1.9e-6     3.8e-6     3.8e-6   (float32 rounding of the output)

A float32 DFT-matmul in the style of torchlibrosa's conv STFT measured 8e-4 dB (> -40 dB) and 2.8e-2 dB
(> -100 dB) on a subset: torchlibrosa itself is only that close to the exact values. So the front end
computes STFT, power, filterbank and log in float64 by default (``compute_dtype``), matching the exact
math to < 1e-5 dB everywhere; that costs ~2.3x a float32 STFT on CPU (measured 9.9 ms vs 4.3 ms per 7 s
clip, batch of 8, one thread; HTSAT-tiny takes ~180 ms per clip there, so the float64 front end is ~5 % of
the audio tower; ``benchmarks/htsat_speed.py``), a negligible share of the encoder on GPU. Pass
``compute_dtype=torch.float32`` for speed. MPS has no float64 and uses float32. Output is always float32. Autocast is disabled inside
``forward`` (a float16 filterbank matmul would cost ~1e-2 dB).

``top_db``: torchlibrosa clamps relative to the maximum of the whole batch tensor, which makes a clip's
features depend on its batch mates; we clamp per example. (msclap uses ``top_db=None``, so this never
matters for the published weights.)
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from openclap.config import FrontendConfig

__all__ = ["LogMelFrontend", "hann_window", "mel_filterbank"]

# Slaney's Auditory Toolbox mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above
# (27 mels per factor 6.4). Source: librosa.hz_to_mel(htk=False), Slaney (1998).
_F_SP = 200.0 / 3.0
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = math.log(6.4) / 27.0


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / _F_SP
    log = _MIN_LOG_MEL + np.log(np.maximum(hz, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return np.where(hz >= _MIN_LOG_HZ, log, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    linear = _F_SP * mel
    log = _MIN_LOG_HZ * np.exp(_LOGSTEP * (np.maximum(mel, _MIN_LOG_MEL) - _MIN_LOG_MEL))
    return np.where(mel >= _MIN_LOG_MEL, log, linear)


def _hz_to_mel_htk(hz: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def _mel_to_hz_htk(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    f_min: float,
    f_max: float,
    *,
    mel_scale: str = "slaney",
    norm: str | None = "slaney",
) -> np.ndarray:
    """Mel filterbank, ``(n_fft // 2 + 1, n_mels)`` float64.

    Triangles with corners at ``n_mels + 2`` points equally spaced on the mel scale between ``f_min`` and
    ``f_max``; with ``norm="slaney"`` each is scaled by ``2 / (f_right - f_left)`` so it has unit area in Hz.
    Defaults (Slaney scale and norm) give ``librosa.filters.mel(sr, n_fft=..., htk=False,
    norm="slaney").T`` (which stores them as float32); ``mel_scale="htk", norm=None`` gives torchaudio's
    ``melscale_fbanks(..., norm=None, mel_scale="htk")`` (LAION's fusion front end).
    """
    if n_mels <= 0 or n_fft <= 0 or sample_rate <= 0:
        raise ValueError(f"need positive sample_rate, n_fft, n_mels; got {sample_rate}, {n_fft}, {n_mels}")
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(f"need 0 <= f_min < f_max <= {sample_rate / 2}, got f_min={f_min}, f_max={f_max}")
    if mel_scale not in ("slaney", "htk") or norm not in ("slaney", None):
        raise ValueError(
            f"mel_scale must be 'slaney' or 'htk' and norm 'slaney' or None, got {mel_scale!r}, {norm!r}"
        )
    to_mel, to_hz = (_hz_to_mel, _mel_to_hz) if mel_scale == "slaney" else (_hz_to_mel_htk, _mel_to_hz_htk)
    bin_hz = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)  # (F,)
    corners = to_hz(np.linspace(to_mel(f_min), to_mel(f_max), n_mels + 2))  # (M + 2,)
    widths = np.diff(corners)  # (M + 1,)
    offsets = corners[:, None] - bin_hz[None, :]  # (M + 2, F)
    rising = -offsets[:-2] / widths[:-1, None]  # (M, F)
    falling = offsets[2:] / widths[1:, None]  # (M, F)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    if norm == "slaney":
        weights *= (2.0 / (corners[2:] - corners[:-2]))[:, None]
    return weights.T  # (F, M)


def hann_window(win_length: int, n_fft: int) -> np.ndarray:
    """Periodic Hann window of ``win_length``, zero-padded on both sides to ``n_fft``, float64.

    Equals ``scipy.signal.get_window("hann", win_length, fftbins=True)`` centred in ``n_fft``.
    """
    n = np.arange(win_length, dtype=np.float64)
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / win_length)
    left = (n_fft - win_length) // 2
    return np.pad(window, (left, n_fft - win_length - left))


def int16_round_trip(wave: torch.Tensor) -> torch.Tensor:
    """laion_clap's input quantisation, float32: clip to [-1, 1], * 32767, truncate to int16, / 32767.

    Written from laion_clap's ``float32_to_int16`` / ``int16_to_float32`` (numpy: float32 product,
    ``astype(int16)`` truncates toward zero, the division in float64 then cast to float32); torch's float32
    product and int16 cast do the same, and its float32 division equals numpy's for all 65536 int16 values.
    """
    return (wave.float().clamp(-1.0, 1.0) * 32767.0).to(torch.int16).float() / 32767.0


class LogMelFrontend(nn.Module):
    """Waveform ``(B, samples)`` -> log-mel ``(B, frames, n_mels)`` float32 dB.

    ``frames = 1 + samples // hop_length`` (``center=True``); 7 s at 44.1 kHz with hop 320 gives 965.
    The Hann window (``(n_fft,)``) and filterbank (``(n_fft // 2 + 1, n_mels)``) are non-persistent
    buffers in ``compute_dtype`` (float64 by default, see the module docstring): they follow
    ``.to(device)``, are rebuilt exactly after any dtype cast of the module, and are never saved in a
    state dict (they are derived from the config, not learned).

    Args:
        cfg: the front-end settings; ``FrontendConfig()`` if omitted.
        compute_dtype: ``torch.float64`` (exact, default) or ``torch.float32`` (faster, see above).

    Raises (``forward``):
        ValueError: ``wave`` is not 2-D, not floating point, on another device, or shorter than
            ``n_fft // 2 + 1`` samples.
    """

    window: torch.Tensor
    mel_fb: torch.Tensor
    cpu_chunk_samples = 1 << 19  # CPU: clips per call chosen so that a call holds at most ~this many samples
    cpu_chunk_max_threads = 1  # ... only with at most this many intra-op threads (see forward)

    def __init__(
        self, cfg: FrontendConfig | None = None, *, compute_dtype: torch.dtype = torch.float64
    ) -> None:
        super().__init__()
        cfg = cfg if cfg is not None else FrontendConfig()
        if not isinstance(cfg, FrontendConfig):
            raise TypeError(f"cfg must be a FrontendConfig, got {type(cfg).__name__}")
        if compute_dtype not in (torch.float32, torch.float64):
            raise ValueError(f"compute_dtype must be torch.float32 or torch.float64, got {compute_dtype}")
        if cfg.top_db is not None and cfg.top_db < 0:
            raise ValueError(f"top_db must be >= 0 dB or None, got {cfg.top_db}")
        self.cfg = cfg
        self.compute_dtype = compute_dtype
        self.register_buffer("window", torch.empty(0), persistent=False)
        self.register_buffer("mel_fb", torch.empty(0), persistent=False)
        self._build_buffers(torch.device("cpu"))

    def _build_buffers(self, device: torch.device) -> None:
        """(Re)compute window and filterbank from the config, exactly, in the compute dtype."""
        cfg = self.cfg
        dtype = self.compute_dtype
        if dtype == torch.float64 and device.type == "mps":  # MPS has no float64
            dtype = torch.float32
        design_rate = cfg.filterbank_sample_rate or cfg.sample_rate
        fb = mel_filterbank(
            design_rate,
            cfg.n_fft,
            cfg.n_mels,
            cfg.f_min,
            cfg.f_max,
            mel_scale=cfg.mel_scale,
            norm=cfg.mel_norm,
        )
        self.window = torch.from_numpy(hann_window(cfg.win_length, cfg.n_fft)).to(device, dtype)
        self.mel_fb = torch.from_numpy(fb).to(device, dtype)

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        # .to(device) moves the buffers; a dtype cast (.half(), .to(torch.bfloat16)) must not degrade
        # them, so rebuild them exactly on their new device.
        super()._apply(fn, recurse)
        self._build_buffers(self.window.device)
        return self

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for ``num_samples`` input samples."""
        if self.cfg.center:
            return 1 + num_samples // self.cfg.hop_length
        return 1 + (num_samples - self.cfg.n_fft) // self.cfg.hop_length

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """``wave`` ``(B, samples)`` float -> ``(B, frames, n_mels)`` float32 dB."""
        cfg = self.cfg
        if not isinstance(wave, torch.Tensor):
            raise TypeError(f"wave must be a torch.Tensor, got {type(wave).__name__}")
        if wave.ndim != 2:
            raise ValueError(
                f"wave must have shape (batch, samples), got {tuple(wave.shape)}; "
                "for one clip use wave.unsqueeze(0)"
            )
        if not wave.is_floating_point():
            raise ValueError(f"wave must be a float tensor in [-1, 1], got dtype {wave.dtype}")
        samples = wave.shape[1]
        min_len = cfg.n_fft // 2 + 1 if cfg.center else cfg.n_fft
        if samples < min_len:
            raise ValueError(
                f"wave has {samples} samples; need at least {min_len} for n_fft={cfg.n_fft} "
                f"(center={cfg.center}); pad short clips first (see openclap.audio.windows.fit_to_length)"
            )
        if self.window.device != wave.device:
            raise ValueError(
                f"wave is on {wave.device} but the front end is on {self.window.device}; "
                "move one of them (frontend.to(device))"
            )
        if cfg.int16_round_trip:
            wave = int16_round_trip(wave)
        # On the CPU with one intra-op thread, a few clips at a time: a batch's float64 spectrogram is tens
        # of MB, which the allocator maps and faults in afresh on each call (measured 27.8 -> 9.9 ms per 7 s
        # clip at batch 8). With 2 threads on the busy 2-core machine, per-clip calls were slower (57-78 ms
        # vs 215 ms wall), so the whole batch goes at once there. Every clip is computed alone either way
        # (top_db is per example), so the output is the same.
        step = max(1, self.cpu_chunk_samples // samples)
        chunked = wave.device.type == "cpu" and torch.get_num_threads() <= self.cpu_chunk_max_threads
        if chunked and wave.shape[0] > step:
            return torch.cat([self._logmel(wave[i : i + step]) for i in range(0, wave.shape[0], step)])
        return self._logmel(wave)

    def _logmel(self, wave: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        dtype = self.window.dtype
        # Autocast off: a float16 matmul or log would cost ~1e-2 dB; float64 inputs are never autocast.
        with torch.autocast(device_type=wave.device.type, enabled=False):
            x = wave.to(dtype)
            spec = torch.stft(
                x,
                n_fft=cfg.n_fft,
                hop_length=cfg.hop_length,
                win_length=cfg.n_fft,  # the window buffer is already centred/padded to n_fft
                window=self.window,
                center=cfg.center,
                pad_mode=cfg.pad_mode,
                normalized=False,
                onesided=True,
                return_complex=True,
            )  # (B, F, T) complex
            # (B, F, T): re^2 + im^2, as torchlibrosa; the same sum as view_as_real(spec).square().sum(-1)
            # bit for bit, without a reduction over a length-2 axis (which took most of the front end's time)
            power = spec.real.square() + spec.imag.square()
            mel = torch.matmul(power.transpose(1, 2), self.mel_fb)  # (B, T, M)
            db = 10.0 * torch.log10(torch.clamp(mel, min=cfg.amin))  # ref = 1.0 -> no offset
            if cfg.top_db is not None:
                peak = db.amax(dim=(1, 2), keepdim=True)  # per example
                db = torch.maximum(db, peak - cfg.top_db)
        return db.to(torch.float32)
