"""Shared steps of the converters: shape checks against the target preset, HTSAT buffer and
front-end checks, and the errors that name what does not fit."""

from __future__ import annotations

import logging
import re

import torch
from torch import Tensor

from openclap.config import ClapConfig
from openclap.convert.report import ConversionReport
from openclap.errors import CheckpointError

logger = logging.getLogger(__name__)


class ConversionError(CheckpointError):
    """A checkpoint does not convert to the requested preset (unknown, missing or mis-shaped tensors)."""


def expected_shapes(config: ClapConfig) -> dict[str, torch.Size]:
    """Shapes of every tensor in an openclap model for ``config``.

    Built on the meta device (no memory, no init); if a module cannot be built there, built on the CPU.
    """
    from openclap.model import ClapModel

    try:
        with torch.device("meta"):
            model = ClapModel(config)
    except Exception as exc:  # noqa: BLE001 - a module computes values at build time: build it for real (slower)
        logger.debug("could not build %r on the meta device (%s); building on the CPU", config.name, exc)
        with torch.no_grad():
            model = ClapModel(config)
    return {k: v.shape for k, v in model.state_dict().items()}


def _hint(likely: str | None, config: ClapConfig) -> str:
    if likely and likely != config.name:
        return f" The checkpoint looks like {likely!r}: pass model={likely!r} (Python) or --model {likely} (CLI)."
    return " The checkpoint was probably made for another preset: pass the matching --model / model= name."


def finish(
    out: dict[str, Tensor],
    report: ConversionReport,
    config: ClapConfig,
    unknown: list[str],
    likely: str | None,
    fillable: dict[str, str] | None = None,
) -> dict[str, Tensor]:
    """Check the converted state dict against ``config``; fill allowed gaps; raise on anything else.

    ``unknown`` are source keys no rule covered; ``fillable`` maps openclap key patterns (regex) to the
    reason they may be zero-filled when the source lacks them. ``report.buffer_problems`` (derived
    buffers that differ from openclap's: another geometry) are reported with the rest.
    """
    problems: list[str] = []
    if unknown:
        problems.append(f"{len(unknown)} source tensor(s) no rule maps: {sorted(unknown)[:8]}")
    shapes = expected_shapes(config)
    wrong = [  # in the model's own order: the first lines name the earliest layers
        f"{k}: checkpoint {tuple(out[k].shape)} vs preset {tuple(shape)}"
        for k, shape in shapes.items()
        if k in out and out[k].shape != shape
    ]
    if wrong:
        problems.append(f"{len(wrong)} shape mismatch(es): " + "; ".join(wrong[:5]))
    extra = sorted(set(out) - set(shapes))
    if extra:
        problems.append(f"{len(extra)} converted tensor(s) the preset has no place for: {extra[:8]}")
    missing = sorted(set(shapes) - set(out))
    still_missing = []
    for key in missing:
        reason = next((r for pat, r in (fillable or {}).items() if re.fullmatch(pat, key)), None)
        if reason is None:
            still_missing.append(key)
        else:
            out[key] = torch.zeros(shapes[key], dtype=torch.float32)
            report.fill(key, reason)
    if still_missing:
        problems.append(
            f"{len(still_missing)} preset tensor(s) missing from the checkpoint: {still_missing[:8]}"
        )
    if report.buffer_problems:
        n = len(report.buffer_problems)
        problems.append(f"{n} derived buffer(s) differ: " + "; ".join(report.buffer_problems[:2]))
    if problems:
        raise ConversionError(
            f"{report.source} ({report.format} format) does not fit preset {config.name!r}: "
            + " | ".join(problems)
            + "."
            + _hint(likely, config)
        )
    return out


# ---------------------------------------------------------------- HTSAT derived buffers and front end


_REL_INDEX = re.compile(r"layers\.(\d+)\.blocks\.(\d+)\.attn\.relative_position_index")
_ATTN_MASK = re.compile(r"layers\.(\d+)\.blocks\.(\d+)\.attn_mask")


def htsat_buffer(key: str, value: Tensor, config: ClapConfig) -> str | None:
    """For an HTSAT derived buffer (``key`` without prefix): None if it equals ours, else the problem.

    msclap/LAION/transformers persist the relative-position index and the shifted-window mask; openclap
    recomputes both from the config, so a checkpoint whose buffers differ was built with another geometry.
    """
    from openclap.audio.swin import relative_position_index, shifted_window_mask

    cfg = config.audio.htsat
    if cfg is None:
        return (
            f"{key}: an HTSAT buffer, but preset {config.name!r} has a {config.audio.encoder} audio encoder"
        )
    m_idx, m_mask = _REL_INDEX.fullmatch(key), _ATTN_MASK.fullmatch(key)
    stage = int((m_idx or m_mask).group(1))  # type: ignore[union-attr]
    H = cfg.spec_size // cfg.patch_stride[0] // 2**stage
    W = cfg.spec_size // cfg.patch_stride[1] // 2**stage
    ws = min(cfg.window_size, H, W)
    if m_idx:
        ours = relative_position_index(ws)
    else:
        if value.ndim != 3:
            return f"{key}: expected a (windows, N, N) mask, got shape {tuple(value.shape)}"
        ours = shifted_window_mask(H, W, ws, ws // 2)
    if ours.shape != value.shape or not torch.equal(ours.to(value.dtype), value):
        return (
            f"{key}: stored {tuple(value.shape)} differs from the {tuple(ours.shape)} buffer openclap computes "
            f"for preset {config.name!r} (window {ws}, token grid {H}x{W})"
        )
    return None


def is_htsat_buffer(key: str) -> bool:
    """True for HTSAT's persisted relative-position index and shifted-window masks."""
    return bool(_REL_INDEX.fullmatch(key) or _ATTN_MASK.fullmatch(key))


def check_mel_filterbank(mel_w: Tensor, config: ClapConfig, report: ConversionReport, key: str) -> None:
    """Compare a torchlibrosa ``melW`` from the checkpoint with the preset's filterbank; note the outcome.

    A mismatch means the preset's front end is not the one the weights were trained with.
    """
    from openclap.audio.frontend import mel_filterbank

    fe = config.audio.frontend
    if getattr(fe, "mel_scale", "slaney") != "slaney":
        report.notes.append(
            f"{key} (a Slaney filterbank) not compared: preset {config.name!r} uses the {fe.mel_scale} mel scale"
        )
        return
    rate = fe.filterbank_sample_rate or fe.sample_rate
    ours = torch.from_numpy(mel_filterbank(rate, fe.n_fft, fe.n_mels, fe.f_min, fe.f_max)).float()
    if ours.shape != mel_w.shape:
        msg = (
            f"{key}: checkpoint filterbank {tuple(mel_w.shape)} vs preset front end {tuple(ours.shape)} "
            f"(n_fft {fe.n_fft}, n_mels {fe.n_mels})"
        )
        report.notes.append("front-end MISMATCH: " + msg)
        logger.warning("%s", msg)
        return
    err = (ours - mel_w.float()).abs().max().item()
    scale = ours.abs().max().item()
    if err > 1e-4 * scale:
        msg = (
            f"{key}: checkpoint filterbank differs from the preset's (max abs diff {err:.3g} of {scale:.3g}); "
            f"the preset's front end ({rate} Hz design, {fe.f_min}-{fe.f_max} Hz) may not be the trained one"
        )
        report.notes.append("front-end MISMATCH: " + msg)
        logger.warning("%s", msg)
    else:
        report.notes.append(
            f"{key} equals the preset's mel filterbank ({rate} Hz design, {fe.f_min}-{fe.f_max} Hz; "
            f"max abs diff {err:.2g})"
        )


# Source keys of torchlibrosa's front end inside msclap's and LAION's audio encoders.
TORCHLIBROSA_KEYS = {
    "spectrogram_extractor.stft.conv_real.weight": "torchlibrosa STFT kernel (frozen); openclap's front end computes the STFT itself",
    "spectrogram_extractor.stft.conv_imag.weight": "torchlibrosa STFT kernel (frozen); openclap's front end computes the STFT itself",
    "logmel_extractor.melW": "torchlibrosa mel filterbank (frozen); openclap designs it from the preset's front end",
}

# Buffers that transformers models persisted in older versions and recompute now.
TRANSFORMERS_BUFFERS = re.compile(
    r"(.*\.)?(embeddings\.position_ids|embeddings\.token_type_ids|h\.\d+\.attn\.(bias|masked_bias))"
)
TRANSFORMERS_BUFFER_REASON = (
    "constant buffer of the transformers text model (position ids / token type ids / GPT-2 causal mask), "
    "recomputed by transformers"
)


def audio_size_name(embed_dim: int) -> str | None:
    """HTSAT size name from the patch-embedding width (LAION: tiny 96, base 128, large 256), else None."""
    return {96: "tiny", 128: "base", 256: "large"}.get(embed_dim)
