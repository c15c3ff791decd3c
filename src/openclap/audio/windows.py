"""Fixed-length windows over variable-length clips.

The audio encoder sees ``num_samples`` at a time (7 s at 44.1 kHz for msclap-2023). Clips are fitted to
that length in one of two ways:

* **Inference** (:func:`split_windows`) is deterministic. A clip of ``L <= N`` samples
  (``N = num_samples``) gives one window, padded by ``pad_mode``. A longer clip gives

      W = 1 + ceil((L - N) / hop)

  windows; window ``k`` starts at ``min(k * hop, L - N)``, i.e. at ``k * hop`` except the last, which is
  shifted back to end exactly at the clip's end (start ``L - N``). Every window is therefore full of
  real audio, the whole clip is covered, and no window reaches past the end. Example: a 60 s clip,
  7 s windows, 3.5 s hop: ``W = 1 + ceil(53 / 3.5) = 1 + 16 = 17``; windows start at 0, 3.5, ..., 52.5 s
  and the 17th at 53 s. Callers pool the window embeddings (e.g. average them) into one clip embedding.
  (msclap instead takes one *random* 7 s crop of a long clip at inference, so the same file gives
  different embeddings; we do not reproduce that.)
* **Training** (:func:`random_crop`) takes one uniformly random window, drawn from an explicit
  ``torch.Generator`` so runs are reproducible.

Padding (``pad_mode``): ``"repeat"`` tiles the clip and cuts the tiling to ``N`` (msclap's rule for
short clips), ``"zero"`` appends zeros, ``"repeatpad"`` repeats the whole clip ``floor(N / L)`` times and
appends zeros (LAION-CLAP's and transformers' ClapFeatureExtractor's rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

__all__ = ["WindowSpan", "fit_to_length", "random_crop", "split_windows"]

PadMode = Literal["repeat", "zero", "repeatpad"]


@dataclass(frozen=True)
class WindowSpan:
    """Where a window lies in the original clip, in seconds.

    For a short clip padded to one window, ``end`` is the clip's real duration, not the padded one.
    """

    start: float
    end: float


def _check_wave(wave: torch.Tensor, num_samples: int) -> None:
    if not isinstance(wave, torch.Tensor):
        raise TypeError(f"wave must be a torch.Tensor, got {type(wave).__name__}")
    if wave.ndim != 1:
        raise ValueError(f"wave must have shape (samples,), got {tuple(wave.shape)}; downmix to mono first")
    if wave.numel() == 0:
        raise ValueError("wave is empty (0 samples); there is nothing to window")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples <= 0:
        raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")


def _check_pad_mode(pad_mode: str) -> None:
    if pad_mode not in ("repeat", "zero", "repeatpad"):
        raise ValueError(f"pad_mode must be 'repeat', 'zero' or 'repeatpad', got {pad_mode!r}")


def fit_to_length(wave: torch.Tensor, num_samples: int, pad_mode: PadMode = "repeat") -> torch.Tensor:
    """Pad or cut ``wave`` (samples,) to exactly ``num_samples`` samples.

    Shorter clips are tiled and cut (``"repeat"``, as msclap does), zero-padded at the end (``"zero"``)
    or repeated whole and then zero-padded (``"repeatpad"``, as LAION-CLAP does); longer clips keep their first ``num_samples`` samples. Returns ``(num_samples,)``.
    """
    _check_wave(wave, num_samples)
    _check_pad_mode(pad_mode)
    length = wave.shape[0]
    if length >= num_samples:
        return wave[:num_samples]
    if pad_mode == "zero":
        return F.pad(wave, (0, num_samples - length))
    if pad_mode == "repeatpad":  # LAION-CLAP (training/data.py get_audio_features, data_filling="repeatpad")
        tiled = wave.repeat(num_samples // length)
        return F.pad(tiled, (0, num_samples - tiled.shape[0]))
    repeats = -(-num_samples // length)  # ceil
    return wave.repeat(repeats)[:num_samples]


def split_windows(
    wave: torch.Tensor,
    num_samples: int,
    hop_samples: int,
    pad_mode: PadMode,
    sample_rate: int,
) -> tuple[torch.Tensor, list[WindowSpan]]:
    """Cut a clip into deterministic, overlapping windows (see the module docstring for the rule).

    Args:
        wave: ``(L,)`` mono waveform.
        num_samples: window length ``N``.
        hop_samples: distance between window starts, ``1 <= hop <= N``.
        pad_mode: how a clip shorter than ``N`` is filled: ``"repeat"``, ``"zero"`` or ``"repeatpad"``.
        sample_rate: rate of ``wave`` in Hz, only used for the spans.

    Returns:
        ``windows`` ``(W, N)`` (a new tensor, same dtype and device as ``wave``) and ``W`` spans giving
        each window's start and end in seconds.
    """
    _check_wave(wave, num_samples)
    _check_pad_mode(pad_mode)
    if (
        isinstance(hop_samples, bool)
        or not isinstance(hop_samples, int)
        or not 0 < hop_samples <= num_samples
    ):
        raise ValueError(f"hop_samples must be an int in [1, num_samples={num_samples}], got {hop_samples!r}")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive int, got {sample_rate!r}")
    length = wave.shape[0]
    if length <= num_samples:
        window = fit_to_length(wave, num_samples, pad_mode)
        return window.unsqueeze(0), [WindowSpan(0.0, length / sample_rate)]
    count = 1 + -(-(length - num_samples) // hop_samples)  # 1 + ceil((L - N) / hop)
    starts = [min(k * hop_samples, length - num_samples) for k in range(count)]
    windows = torch.stack([wave[s : s + num_samples] for s in starts])  # (W, N)
    spans = [WindowSpan(s / sample_rate, (s + num_samples) / sample_rate) for s in starts]
    return windows, spans


def random_crop(
    wave: torch.Tensor,
    num_samples: int,
    generator: torch.Generator,
    pad_mode: PadMode = "repeat",
) -> torch.Tensor:
    """One training window: a uniformly random ``num_samples`` crop of ``wave`` (samples,).

    The start is drawn from ``generator`` (a CPU ``torch.Generator``), uniformly over all
    ``L - N + 1`` positions; a clip no longer than ``N`` is padded by ``pad_mode`` instead (no draw).
    Returns ``(num_samples,)``.
    """
    _check_wave(wave, num_samples)
    _check_pad_mode(pad_mode)
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator (e.g. torch.Generator().manual_seed(0)), "
            f"got {type(generator).__name__}"
        )
    length = wave.shape[0]
    if length <= num_samples:
        return fit_to_length(wave, num_samples, pad_mode)
    start = int(torch.randint(0, length - num_samples + 1, (1,), generator=generator).item())
    return wave[start : start + num_samples]
