"""Build the audio encoder an ``AudioConfig`` names."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from openclap.audio.cnn14 import CNN14
from openclap.audio.htsat import HTSAT
from openclap.config import AudioConfig, ConfigError


def _build_htsat(cfg: AudioConfig) -> nn.Module:
    if cfg.htsat is None:
        raise ConfigError("audio.encoder is 'htsat' but audio.htsat is missing")
    return HTSAT(cfg.htsat, n_mels=cfg.frontend.n_mels)


def _build_cnn14(cfg: AudioConfig) -> nn.Module:
    if cfg.cnn14 is None:
        raise ConfigError("audio.encoder is 'cnn14' but audio.cnn14 is missing")
    return CNN14(cfg.cnn14, n_mels=cfg.frontend.n_mels)


# Encoder name (AudioConfig.encoder) -> builder. Each encoder maps (B, frames, n_mels) log-mel to an
# AudioEncoderOutput whose features have cfg.width channels.
AUDIO_ENCODERS: dict[str, Callable[[AudioConfig], nn.Module]] = {
    "htsat": _build_htsat,
    "cnn14": _build_cnn14,
}


def build_audio_encoder(cfg: AudioConfig) -> nn.Module:
    """Return a randomly initialised audio encoder (HTSAT or CNN14) for ``cfg``."""
    try:
        builder = AUDIO_ENCODERS[cfg.encoder]
    except KeyError:
        raise ConfigError(f"unknown audio encoder {cfg.encoder!r}; known: {sorted(AUDIO_ENCODERS)}") from None
    return builder(cfg)
