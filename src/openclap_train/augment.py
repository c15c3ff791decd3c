"""Training-time audio augmentation: recordings the model has not heard, made from those it has.

Two layers:

* **Primitives**, deterministic functions of a waveform ``(samples,)`` and explicit parameters:
  :func:`apply_gain`, :func:`time_shift`, :func:`change_speed`, :func:`mix_at_snr`,
  :func:`room_impulse_response` + :func:`apply_reverb`, :func:`equalize`, :func:`band_limit`,
  :func:`mu_law`, :func:`resample_down_up`, :func:`mask_time`, :func:`mask_frequency`. Each says in its
  docstring what a measurement of its output shows (the tests measure exactly that on real clips).
* **The random driver** :func:`augment_wave` draws every parameter from the sample's own
  ``torch.Generator`` (seeded by ``(seed, epoch, index)`` in :mod:`openclap_train.data`), so a run is a
  function of its seed and ``--resume`` stays exact. A transform whose probability is 0 draws nothing,
  so switching a new transform on never changes what the others draw in runs that leave it off.

Signal chain (a talker or instrument in a room, picked up with background noise by a microphone, sent
through a codec): speed -> [clip mixing] -> reverb -> background noise -> EQ -> band-limiting -> codec ->
gain -> time shift -> SpecAugment-style masks. Speed perturbation changes what is cropped, so the data
pipeline applies it before the crop (:func:`draw_speed`, then :func:`change_speed`).

SpecAugment (Park et al., 2019) masks bands and spans of the log-mel image. Here the masks are applied
to the waveform — a span set to silence, a frequency band removed — so that the library's model and its
front end stay untouched (the masks are data, like every other transform) and any audio tower gets them;
the model's log-mel of a masked span is the silence floor, and mel bands inside a removed band fall to
the floor up to the analysis window's leakage.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import soxr
import torch

from openclap.audio.io import RESAMPLE_QUALITY
from openclap_train.config import AugmentConfig

__all__ = [
    "apply_gain",
    "apply_reverb",
    "augment_wave",
    "band_limit",
    "change_speed",
    "draw_speed",
    "equalize",
    "hz_to_mel",
    "mask_frequency",
    "mask_time",
    "mel_to_hz",
    "mix_at_snr",
    "mu_law",
    "resample_down_up",
    "room_impulse_response",
    "spectral_filter",
    "time_shift",
]

Trace = list[tuple[str, dict[str, Any]]]

LN_1000 = math.log(1000.0)  # an RT60 decay is 60 dB = a factor 1000 in amplitude


# --------------------------------------------------------------------------------------- primitives
def apply_gain(wave: torch.Tensor, gain_db: float) -> torch.Tensor:
    """Scale by ``gain_db`` decibels: the RMS level of the output is ``gain_db`` dB above the input's."""
    return wave * (10.0 ** (gain_db / 20))


def time_shift(wave: torch.Tensor, shift: int) -> torch.Tensor:
    """Circular shift by ``shift`` samples (positive: later): ``out[(i + shift) % n] == wave[i]``."""
    return torch.roll(wave, shift)


def change_speed(wave: torch.Tensor, rate: int, factor: float) -> torch.Tensor:
    """Play ``factor`` times as fast (Kaldi-style speed perturbation): every frequency is multiplied by
    ``factor`` and the length divided by it (``round(len / factor)`` samples), via soxr resampling."""
    if factor <= 0:
        raise ValueError(f"speed factor must be > 0, got {factor}")
    if factor == 1.0:
        return wave
    out = soxr.resample(
        wave.numpy().astype(np.float32, copy=False), rate * factor, rate, quality=RESAMPLE_QUALITY
    )
    return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))


def mix_at_snr(wave: torch.Tensor, noise: torch.Tensor, snr_db: float) -> torch.Tensor:
    """``wave + c * noise`` with ``c`` such that ``10 log10(power(wave) / power(c * noise)) == snr_db``;
    a silent ``noise`` (or ``wave``) leaves ``wave`` unchanged."""
    if noise.shape != wave.shape:
        raise ValueError(f"noise must have the clip's shape {tuple(wave.shape)}, got {tuple(noise.shape)}")
    p_wave, p_noise = wave.pow(2).mean(), noise.pow(2).mean()
    if p_noise <= 0 or p_wave <= 0:
        return wave
    return wave + noise * torch.sqrt(p_wave / (p_noise * 10.0 ** (snr_db / 10)))


def room_impulse_response(rate: int, rt60: float, drr_db: float, generator: torch.Generator) -> torch.Tensor:
    """A synthetic room: a direct-path impulse, then Gaussian noise under an exponential envelope that
    decays by 60 dB in ``rt60`` seconds (a diffuse late reverberation), scaled so that the direct path
    has ``drr_db`` dB more energy than the tail. ``(ceil(rate * rt60) + 1,)``; the tail's Schroeder decay
    curve falls 60 dB in ``rt60`` s."""
    if rt60 <= 0:
        raise ValueError(f"rt60 must be > 0 seconds, got {rt60}")
    n = math.ceil(rate * rt60)
    t = torch.arange(1, n + 1, dtype=torch.float64) / rate
    tail = torch.randn(n, generator=generator, dtype=torch.float64) * torch.exp(-LN_1000 * t / rt60)
    tail = tail * math.sqrt(10.0 ** (-drr_db / 10) / float(tail.pow(2).sum()))
    return torch.cat([torch.ones(1, dtype=torch.float64), tail]).float()


def _fast_fft_size(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= n (an FFT of a large prime length is many times slower)."""
    best = 1 << max(0, (n - 1).bit_length())
    p3 = 1
    while p3 < best:
        p35 = p3
        while p35 < best:
            size = p35
            while size < n:
                size *= 2
            best = min(best, size)
            p35 *= 5
        p3 *= 3
    return best


def _fft_convolve(wave: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
    """Linear convolution (zero-padded FFT), cut to the clip's length."""
    n = _fast_fft_size(wave.shape[0] + ir.shape[0] - 1)
    out = torch.fft.irfft(torch.fft.rfft(wave.double(), n) * torch.fft.rfft(ir.double(), n), n)
    return out[: wave.shape[0]]


def apply_reverb(wave: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
    """Convolve with ``ir`` (causal; the tail past the clip's end is cut) and restore the input's RMS
    level, so that reverberation changes the sound and not the loudness (gain is its own transform)."""
    out = _fft_convolve(wave, ir)
    rms_in, rms_out = wave.double().pow(2).mean().sqrt(), out.pow(2).mean().sqrt()
    if rms_out > 0:
        out = out * (rms_in / rms_out)
    return out.float()


def spectral_filter(
    wave: torch.Tensor, rate: int, response: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """Multiply the clip's whole-length spectrum by a real, zero-phase ``response(freqs_hz)``: a circular
    filter (the clip is one period, as for the circular time shift), so the output's spectrum is exactly
    the input's times the response; a sharp response rings a little across the clip's two ends."""
    n = wave.shape[0]
    spec = torch.fft.rfft(wave.double())
    freqs = torch.fft.rfftfreq(n, d=1.0 / rate, dtype=torch.float64)
    return torch.fft.irfft(spec * response(freqs), n).float()


def eq_centres(rate: int, bands: int) -> torch.Tensor:
    """Centre frequencies (Hz) of :func:`equalize`'s bands: log-spaced from 100 Hz to 0.8 x Nyquist."""
    return torch.logspace(math.log10(100.0), math.log10(0.4 * rate), bands, dtype=torch.float64)


def equalize(wave: torch.Tensor, rate: int, gains_db: list[float] | torch.Tensor) -> torch.Tensor:
    """A smooth microphone/channel colouring: gain ``gains_db[k]`` at band centre ``eq_centres(rate,
    len(gains_db))[k]``, interpolated linearly in dB over log frequency between centres, flat beyond the
    first and last (zero phase). The spectrum at a centre is scaled by exactly its gain."""
    gains = torch.as_tensor(gains_db, dtype=torch.float64)
    if gains.ndim != 1 or gains.numel() < 2:
        raise ValueError(f"equalize needs >= 2 band gains, got {gains_db!r}")
    log_centres = torch.log(eq_centres(rate, gains.numel()))

    def response(freqs: torch.Tensor) -> torch.Tensor:
        x = torch.log(freqs.clamp(min=1.0)).clamp(log_centres[0], log_centres[-1])
        k = torch.searchsorted(log_centres, x).clamp(1, gains.numel() - 1)
        w = (x - log_centres[k - 1]) / (log_centres[k] - log_centres[k - 1])
        return 10.0 ** ((gains[k - 1] * (1 - w) + gains[k] * w) / 20)

    return spectral_filter(wave, rate, response)


def band_limit(
    wave: torch.Tensor,
    rate: int,
    lowpass_hz: float | None,
    highpass_hz: float | None = None,
    transition: float = 0.15,
) -> torch.Tensor:
    """Keep ``[highpass_hz, lowpass_hz]``: no energy at all above ``lowpass_hz`` or below ``highpass_hz``,
    raised-cosine edges ``transition`` x the cut-off wide inside the band, unchanged in between."""

    def response(freqs: torch.Tensor) -> torch.Tensor:
        r = torch.ones_like(freqs)
        if lowpass_hz is not None and lowpass_hz < rate / 2:
            start = lowpass_hz * (1 - transition)
            x = ((freqs - start) / (lowpass_hz - start)).clamp(0, 1)
            r = r * 0.5 * (1 + torch.cos(math.pi * x))
        if highpass_hz is not None and highpass_hz > 0:
            end = highpass_hz * (1 + transition)
            x = ((end - freqs) / (end - highpass_hz)).clamp(0, 1)
            r = r * 0.5 * (1 + torch.cos(math.pi * x))
        return r

    return spectral_filter(wave, rate, response)


def mu_law(wave: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """μ-law companding to ``2 ** bits`` levels and back (G.711's μ = 255 for 8 bits), relative to the
    clip's peak: the output takes at most ``2 ** bits`` distinct values, with steps that grow with the
    amplitude (quiet samples keep more precision than with linear quantisation)."""
    if not 2 <= bits <= 16:
        raise ValueError(f"mu-law bits must be in [2, 16], got {bits}")
    peak = wave.abs().max()
    if peak <= 0:
        return wave
    mu = 2.0**bits - 1
    x = (wave.double() / peak).clamp(-1, 1)
    y = torch.sign(x) * torch.log1p(mu * x.abs()) / math.log1p(mu)  # in [-1, 1]
    q = torch.round((y + 1) / 2 * mu) / mu * 2 - 1  # 2 ** bits levels
    return (torch.sign(q) * ((1 + mu) ** q.abs() - 1) / mu * peak).float()


def resample_down_up(wave: torch.Tensor, rate: int, low_rate: float) -> torch.Tensor:
    """Resample to ``low_rate`` and back (a narrow-band channel): nothing is left above ``low_rate / 2``
    (soxr's anti-aliasing filter) and the length is unchanged."""
    if low_rate >= rate:
        return wave
    x = wave.numpy().astype(np.float32, copy=False)
    down = soxr.resample(x, rate, low_rate, quality=RESAMPLE_QUALITY)
    up = torch.from_numpy(np.ascontiguousarray(soxr.resample(down, low_rate, rate, quality=RESAMPLE_QUALITY)))
    n = wave.shape[0]
    return up[:n] if up.shape[0] >= n else torch.nn.functional.pad(up, (0, n - up.shape[0]))


def mask_time(wave: torch.Tensor, start: int, width: int) -> torch.Tensor:
    """Silence ``wave[start : start + width]`` (SpecAugment's time mask, in the waveform)."""
    out = wave.clone()
    out[max(0, start) : max(0, start + width)] = 0
    return out


def hz_to_mel(hz: float) -> float:
    """HTK mel scale (the scale of mel filterbanks)."""
    return 2595.0 * math.log10(1.0 + hz / 700.0)


def mel_to_hz(mel: float) -> float:
    """Inverse of :func:`hz_to_mel`."""
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mask_frequency(wave: torch.Tensor, rate: int, low_hz: float, high_hz: float) -> torch.Tensor:
    """Remove the band ``[low_hz, high_hz]`` (SpecAugment's frequency mask, in the waveform): the
    clip's spectrum is exactly zero there and untouched elsewhere."""
    return spectral_filter(wave, rate, lambda f: ((f < low_hz) | (f > high_hz)).to(torch.float64))


# ------------------------------------------------------------------------------------ random driver
def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _happens(generator: torch.Generator, prob: float) -> bool:
    """One draw when ``0 < prob``, none when ``prob == 0`` (off switches leave the other draws alone)."""
    return prob > 0 and float(torch.rand((), generator=generator)) < prob


def draw_speed(cfg: AugmentConfig, generator: torch.Generator, trace: Trace | None = None) -> float:
    """The speed factor for one sample (1.0 when not drawn); call before cropping (crop ``N * factor``
    samples, then :func:`change_speed` gives ``N``)."""
    if not _happens(generator, cfg.speed_prob):
        return 1.0
    factor = _uniform(generator, *cfg.speed_range)
    if trace is not None:
        trace.append(("speed", {"factor": factor}))
    return factor


def augment_wave(
    wave: torch.Tensor,
    cfg: AugmentConfig,
    generator: torch.Generator,
    other: torch.Tensor | None = None,
    *,
    rate: int | None = None,
    noise: torch.Tensor | None = None,
    trace: Trace | None = None,
) -> torch.Tensor:
    """Apply ``cfg``'s transforms to a crop ``(samples,)``, every parameter drawn from ``generator``.

    ``other``: a second crop mixed in (``mix_prob``, with joined captions: the caller decides and joins);
    ``noise``: a background crop mixed at a random SNR (the caller draws it with ``noise_prob``);
    ``rate``: the sample rate, needed by the frequency-domain transforms; ``trace``: a list that gets one
    ``(name, parameters)`` entry per transform applied (for tests and debugging).
    """

    def log(name: str, **params: Any) -> None:
        if trace is not None:
            trace.append((name, params))

    needs_rate = cfg.reverb_prob or cfg.eq_prob or cfg.bandlimit_prob or cfg.codec_prob or cfg.freq_masks
    if needs_rate and rate is None:
        raise ValueError(
            "augment_wave: reverb, EQ, band-limiting, codec and frequency masks need the sample "
            "rate; pass rate="
        )
    if other is not None:  # the original clip mixing (mix_prob): weights drawn here, as before
        lam = 0.3 + 0.4 * float(torch.rand((), generator=generator))
        wave = lam * wave + (1 - lam) * other
        log("mix", weight=lam)
    if _happens(generator, cfg.reverb_prob):
        rt60, drr = _uniform(generator, *cfg.reverb_rt60), _uniform(generator, *cfg.reverb_drr_db)
        wave = apply_reverb(wave, room_impulse_response(rate, rt60, drr, generator))
        log("reverb", rt60=rt60, drr_db=drr)
    if noise is not None:
        snr = _uniform(generator, *cfg.noise_snr_db)
        wave = mix_at_snr(wave, noise, snr)
        log("noise", snr_db=snr)
    if _happens(generator, cfg.eq_prob):
        gains = [_uniform(generator, -cfg.eq_db, cfg.eq_db) for _ in range(cfg.eq_bands)]
        wave = equalize(wave, rate, gains)
        log("eq", gains_db=gains)
    if _happens(generator, cfg.bandlimit_prob):
        low, high = _uniform(generator, *cfg.lowpass_hz), _uniform(generator, *cfg.highpass_hz)
        wave = band_limit(wave, rate, low, high)
        log("bandlimit", lowpass_hz=low, highpass_hz=high)
    if _happens(generator, cfg.codec_prob):
        if float(torch.rand((), generator=generator)) < 0.5:
            wave = mu_law(wave, cfg.mulaw_bits)
            log("mulaw", bits=cfg.mulaw_bits)
        else:
            low_rate = round(_uniform(generator, *cfg.codec_rate_hz))
            wave = resample_down_up(wave, rate, low_rate)
            log("resample", low_rate=low_rate)
    if cfg.gain_db > 0:
        gain_db = (2 * float(torch.rand((), generator=generator)) - 1) * cfg.gain_db
        wave = apply_gain(wave, gain_db)
        log("gain", gain_db=gain_db)
    if cfg.time_shift > 0:
        limit = int(cfg.time_shift * wave.shape[0])
        shift = int(torch.randint(-limit, limit + 1, (), generator=generator)) if limit else 0
        wave = time_shift(wave, shift)
        log("shift", samples=shift)
    if cfg.freq_masks:
        top = hz_to_mel(rate / 2)
        for _ in range(cfg.freq_masks):
            width = _uniform(generator, 0, cfg.freq_mask) * top
            start = _uniform(generator, 0, top - width)
            low, high = mel_to_hz(start), mel_to_hz(start + width)
            wave = mask_frequency(wave, rate, low, high)
            log("freq_mask", low_hz=low, high_hz=high)
    if cfg.time_masks:
        n = wave.shape[0]
        for _ in range(cfg.time_masks):
            width = int(_uniform(generator, 0, cfg.time_mask) * n)
            start = int(torch.randint(0, n - width + 1, (), generator=generator))
            wave = mask_time(wave, start, width)
            log("time_mask", start=start, width=width)
    return wave
