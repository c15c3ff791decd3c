"""The CLAP model: two towers, two projections, one learnable temperature.

State-dict layout (converters in ``openclap.convert`` map the peers' checkpoints onto it):

    audio_frontend.*      log-mel front end (no persistent tensors: window and filterbank are derived)
    audio_encoder.*       HTSAT or CNN14 (names follow msclap's modules)
    audio_projection.*    projection of the audio features into the joint space
    text_encoder.model.*  the transformers model (GPT-2, BERT or RoBERTa)
    text_projection.*
    logit_scale           log of the inverse temperature
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from openclap.audio.encoders import build_audio_encoder
from openclap.audio.frontend import LogMelFrontend
from openclap.config import ClapConfig
from openclap.text.encoders import TextEncoder

# CLIP's convention, kept by msclap and LAION: the temperature may not go below 1/100.
MAX_LOGIT_SCALE = 100.0


class MsclapProjection(nn.Module):
    """msclap's projection: linear1 -> GELU -> linear2 -> dropout, added to linear1's output, LayerNorm."""

    def __init__(self, d_in: int, d_out: int, dropout: float) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_in, d_out, bias=False)
        self.linear2 = nn.Linear(d_out, d_out, bias=False)
        self.layer_norm = nn.LayerNorm(d_out)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, d_in) -> (B, d_out)
        h = self.linear1(x)
        return self.layer_norm(h + self.drop(self.linear2(F.gelu(h))))


class LaionProjection(nn.Module):
    """LAION-CLAP's (and transformers' ClapModel's) projection: Linear -> ReLU -> Linear, with biases."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_in, d_out)
        self.linear2 = nn.Linear(d_out, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(F.relu(self.linear1(x)))


def build_projection(config: ClapConfig, d_in: int) -> nn.Module:
    """The projection block the config names."""
    if config.projection == "laion":
        return LaionProjection(d_in, config.embed_dim)
    return MsclapProjection(d_in, config.embed_dim, config.projection_dropout)


@dataclass
class ClapOutput:
    """What ``ClapModel.forward`` returns; embeddings are L2-normalised."""

    audio_embeds: torch.Tensor  # (B, D)
    text_embeds: torch.Tensor  # (B, D)
    logit_scale: torch.Tensor  # () the clamped exp(logit_scale)
    logits_per_audio: torch.Tensor  # (B, B) = scale * audio @ text.T


class ClapModel(nn.Module):
    """CLAP: waveform -> audio embedding, token ids -> text embedding, in one ``embed_dim`` space."""

    def __init__(self, config: ClapConfig) -> None:
        super().__init__()
        self.config = config
        self.audio_frontend = LogMelFrontend(config.audio.frontend)
        self.audio_encoder = build_audio_encoder(config.audio)
        self.audio_projection = build_projection(config, config.audio.width)
        self.text_encoder = TextEncoder(config.text)
        self.text_projection = build_projection(config, config.text.width)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init)))
        # Inference precision, set by ClapPipeline.configure(dtype=...): None runs as called (float32,
        # or under the caller's own autocast, e.g. the trainer's); a dtype runs the towers under autocast.
        self.autocast_dtype: torch.dtype | None = None

    def _autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """Autocast to ``autocast_dtype`` on ``device``; a no-op that leaves any outer autocast alone when None."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.autocast_dtype)

    def encode_audio_features(self, waveform: torch.Tensor) -> torch.Tensor:
        """Audio features before projection: (B, samples) at the model's rate -> (B, width)."""
        if waveform.ndim != 2:
            raise ValueError(f"waveform must be (batch, samples), got shape {tuple(waveform.shape)}")
        logmel = self.audio_frontend(waveform)  # (B, frames, n_mels)
        return self.audio_encoder(logmel).features  # (B, width)

    def encode_audio(self, waveform: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """(B, samples) -> (B, embed_dim) audio embeddings (L2-normalised unless normalize=False)."""
        with self._autocast(waveform.device):  # the log-mel front end turns autocast off inside
            embeds = self.audio_projection(self.encode_audio_features(waveform))
        if self.autocast_dtype is not None:
            embeds = embeds.float()
        return F.normalize(embeds, dim=-1) if normalize else embeds

    def encode_text(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, normalize: bool = True
    ) -> torch.Tensor:
        """(B, L) token ids -> (B, embed_dim) text embeddings (L2-normalised unless normalize=False)."""
        with self._autocast(input_ids.device):
            embeds = self.text_projection(self.text_encoder(input_ids, attention_mask))  # (B, embed_dim)
        if self.autocast_dtype is not None:
            embeds = embeds.float()
        return F.normalize(embeds, dim=-1) if normalize else embeds

    def scale(self) -> torch.Tensor:
        """The multiplicative logit scale exp(logit_scale), clamped at MAX_LOGIT_SCALE."""
        return self.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)

    def forward(
        self, waveform: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> ClapOutput:
        """Embed a batch of paired audio and text and score every pair."""
        audio_embeds = self.encode_audio(waveform)
        text_embeds = self.encode_text(input_ids, attention_mask)
        scale = self.scale()
        return ClapOutput(
            audio_embeds=audio_embeds,
            text_embeds=text_embeds,
            logit_scale=scale,
            logits_per_audio=scale * audio_embeds @ text_embeds.T,
        )
