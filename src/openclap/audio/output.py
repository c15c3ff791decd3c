"""What every audio encoder returns."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class AudioEncoderOutput:
    """Output of an audio encoder (HTSAT, CNN14) for one batch of log-mel windows.

    Attributes:
        features: (B, width) pooled clip embedding, the tensor the CLAP audio projection consumes.
            HTSAT: msclap's ``latent_output`` (mean over all tokens after the final LayerNorm, 768-d for
            HTSAT-tiny). CNN14: msclap's ``embedding`` (ReLU(fc1(...)), 2048-d; dropout in training).
        clipwise_logits: (B, num_classes) AudioSet tagging logits, *before* the sigmoid. msclap's
            ``clipwise_output`` is ``torch.sigmoid(clipwise_logits)``.
        framewise: (B, T', num_classes) per-time-step tagging logits, also before the sigmoid, or
            None when the encoder has no frame-level head (CNN14). For HTSAT, T' is the number of time
            tokens after the last stage (32 for HTSAT-tiny), each covering ``8 * patch_stride`` frames of
            the resampled spectrogram; msclap's ``framewise_output`` is
            ``sigmoid(framewise).repeat_interleave(8 * patch_stride, dim=1)``.
    """

    features: Tensor
    clipwise_logits: Tensor
    framewise: Tensor | None = None
