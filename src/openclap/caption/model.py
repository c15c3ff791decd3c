"""Captioning model: audio -> CLAP audio embedding -> mapping network -> prefix -> GPT-2 decoder.

The design is msclap's "clapcap" (microsoft/CLAP, ``msclap/models/mapper.py``, ``ClapCaptionModel``),
itself ClipCap (Mokady et al. 2021) on CLAP: the L2-normalised audio embedding is mapped to
``prefix_length`` vectors of the decoder's width, which GPT-2 reads before the caption tokens.

State-dict layout (``openclap.convert.clapcap`` maps msclap's checkpoint onto it):

    audio_frontend.*      log-mel front end (no persistent tensors)
    audio_encoder.*       HTSAT / CNN14, same keys as ``ClapModel`` (a CLAP audio tower loads as is)
    audio_projection.*    projection into the CLAP joint space
    mapper.*              TransformerMapper (linear, prefix_const, transformer.layers.N.*) or MLPMapper (net.N.*)
    decoder.*             transformers ``GPT2LMHeadModel`` (decoder.transformer.*, decoder.lm_head.weight,
                          the latter tied to decoder.transformer.wte.weight)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel

from openclap.audio.encoders import build_audio_encoder
from openclap.audio.frontend import LogMelFrontend
from openclap.caption.config import CaptionConfig, MapperConfig
from openclap.model import build_projection

# Key of GPT-2's output layer; it shares its tensor with the token embedding and is not saved twice.
TIED_KEY = "decoder.lm_head.weight"
TIED_SOURCE = "decoder.transformer.wte.weight"


# ----------------------------------------------------------------------------------------- mappers
class MapperAttention(nn.Module):
    """Multi-head self-attention with msclap's parameter layout (queries; keys and values in one linear)."""

    def __init__(self, width: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        # msclap's TransformerLayer builds its attention with bias=False; the output projection has a bias.
        self.to_queries = nn.Linear(width, width, bias=False)
        self.to_keys_values = nn.Linear(width, 2 * width, bias=False)
        self.project = nn.Linear(width, width)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape  # (B, N, C)
        h = self.num_heads
        q = self.to_queries(x).view(b, n, h, c // h).transpose(1, 2)  # (B, h, N, hd)
        kv = self.to_keys_values(x).view(b, n, 2, h, c // h)  # (B, N, 2, h, hd)
        k, v = kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2)  # (B, h, N, hd)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(c // h))  # (B, h, N, N)
        out = att.softmax(dim=-1) @ v  # (B, h, N, hd)
        out = out.transpose(1, 2).reshape(b, n, c)
        return self.project(out)


class MapperMLP(nn.Module):
    """fc1 -> ReLU -> dropout -> fc2 -> dropout."""

    def __init__(self, width: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(F.relu(self.fc1(x)))))


class MapperLayer(nn.Module):
    """Pre-norm transformer layer: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, width: int, cfg: MapperConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = MapperAttention(width, cfg.num_heads, cfg.dropout)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = MapperMLP(width, int(width * cfg.mlp_ratio), cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class MapperTransformer(nn.Module):
    """A stack of ``MapperLayer`` (kept as ``transformer.layers`` for msclap's key names)."""

    def __init__(self, width: int, cfg: MapperConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(MapperLayer(width, cfg) for _ in range(cfg.num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class TransformerMapper(nn.Module):
    """(B, embed_dim) -> (B, prefix_length, width): expand to clip_length vectors, attend with learnt constants."""

    def __init__(self, embed_dim: int, width: int, cfg: MapperConfig) -> None:
        super().__init__()
        self.clip_length = cfg.clip_length
        self.prefix_length = cfg.prefix_length
        self.linear = nn.Linear(embed_dim, cfg.clip_length * width)
        self.prefix_const = nn.Parameter(torch.randn(cfg.prefix_length, width))
        self.transformer = MapperTransformer(width, cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        clip = self.linear(x).view(b, self.clip_length, -1)  # (B, clip_length, W)
        const = self.prefix_const.unsqueeze(0).expand(b, -1, -1)  # (B, prefix_length, W)
        out = self.transformer(torch.cat((clip, const), dim=1))  # (B, clip_length + prefix_length, W)
        return out[:, self.clip_length :]  # (B, prefix_length, W)


class MLPMapper(nn.Module):
    """msclap's MLP mapping: Linear(D, W*P/2) -> Tanh -> Linear(W*P/2, W*P), reshaped to (B, P, W)."""

    def __init__(self, embed_dim: int, width: int, cfg: MapperConfig) -> None:
        super().__init__()
        self.prefix_length = cfg.prefix_length
        self.width = width
        hidden = width * cfg.prefix_length // 2
        self.net = nn.Sequential(
            nn.Linear(embed_dim, hidden), nn.Tanh(), nn.Linear(hidden, width * cfg.prefix_length)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).view(x.shape[0], self.prefix_length, self.width)  # (B, P, W)


def build_mapper(config: CaptionConfig) -> nn.Module:
    """The mapping network the config names."""
    width = config.text.width
    if config.mapper.type == "mlp":
        return MLPMapper(config.embed_dim, width, config.mapper)
    return TransformerMapper(config.embed_dim, width, config.mapper)


def build_decoder(config: CaptionConfig) -> GPT2LMHeadModel:
    """A randomly initialised GPT-2 language model from ``config.text.transformer`` (no download)."""
    kwargs = dict(config.text.transformer)
    vocab = int(kwargs.get("vocab_size", 50257))
    for key in ("bos_token_id", "eos_token_id"):  # GPT-2's defaults (50256) do not fit small vocabularies
        if key not in kwargs and vocab <= 50256:
            kwargs[key] = None
    return GPT2LMHeadModel(GPT2Config(**kwargs))


# ------------------------------------------------------------------------------------------- model
@dataclass
class CaptionOutput:
    """Teacher-forced forward pass: mean token cross-entropy and the caption-position logits."""

    loss: torch.Tensor  # () mean over caption tokens with attention_mask 1
    logits: torch.Tensor  # (B, L, V) logits predicting caption token t at position t


class CaptionModel(nn.Module):
    """Audio tower + mapping network + GPT-2 decoder; ``encode_audio`` matches ``ClapModel.encode_audio``."""

    def __init__(self, config: CaptionConfig) -> None:
        super().__init__()
        self.config = config
        self.audio_frontend = LogMelFrontend(config.audio.frontend)
        self.audio_encoder = build_audio_encoder(config.audio)
        self.audio_projection = build_projection(config, config.audio.width)  # type: ignore[arg-type]
        self.mapper = build_mapper(config)
        self.decoder = build_decoder(config)

    @property
    def prefix_length(self) -> int:
        return self.config.mapper.prefix_length

    @property
    def vocab_size(self) -> int:
        return int(self.decoder.config.vocab_size)

    def encode_audio(self, waveform: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """(B, samples) at the model's rate -> (B, embed_dim) CLAP audio embeddings."""
        if waveform.ndim != 2:
            raise ValueError(f"waveform must be (batch, samples), got shape {tuple(waveform.shape)}")
        features = self.audio_encoder(self.audio_frontend(waveform)).features  # (B, width)
        embeds = self.audio_projection(features)  # (B, embed_dim)
        return F.normalize(embeds, dim=-1) if normalize else embeds

    def prefix(self, audio_embeds: torch.Tensor) -> torch.Tensor:
        """(B, embed_dim) audio embeddings -> (B, prefix_length, width) decoder prefix."""
        if audio_embeds.ndim != 2 or audio_embeds.shape[1] != self.config.embed_dim:
            raise ValueError(
                f"audio_embeds must be (B, {self.config.embed_dim}), got {tuple(audio_embeds.shape)}"
            )
        if self.config.normalize_prefix:
            # msclap: prefix / prefix.norm(2, -1) (no epsilon; a zero embedding is invalid input anyway)
            audio_embeds = audio_embeds / audio_embeds.norm(2, -1, keepdim=True)
        return self.mapper(audio_embeds)

    def embed_tokens(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, L) token ids -> (B, L, width) decoder input embeddings."""
        return self.decoder.transformer.wte(input_ids)

    def forward(
        self, audio_embeds: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> CaptionOutput:
        """Teacher forcing: prefix + caption tokens in, next-token cross-entropy on the caption tokens."""
        prefix = self.prefix(audio_embeds)  # (B, P, W)
        tokens = self.embed_tokens(input_ids)  # (B, L, W)
        b, p = prefix.shape[:2]
        mask = torch.cat(
            [torch.ones(b, p, dtype=attention_mask.dtype, device=attention_mask.device), attention_mask],
            dim=1,
        )  # (B, P + L)
        out = self.decoder(inputs_embeds=torch.cat([prefix, tokens], dim=1), attention_mask=mask)
        # position P - 1 + t predicts caption token t
        logits = out.logits[:, p - 1 : -1]  # (B, L, V)
        target = input_ids.masked_fill(attention_mask == 0, -100)
        loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1), ignore_index=-100
        )
        return CaptionOutput(loss=loss, logits=logits)

    def audio_state_keys(self) -> list[str]:
        """Keys of the audio tower (shared with ``ClapModel``)."""
        return [k for k in self.state_dict() if k.startswith(("audio_encoder.", "audio_projection."))]
