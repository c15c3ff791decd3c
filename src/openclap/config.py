"""Typed configuration for CLAP models.

Every architecture is described by a ``ClapConfig`` made of an ``AudioConfig`` (front end, clip
policy, encoder) and a ``TextConfig`` (transformers architecture, tokenizer, pooling). Configs are
plain dataclasses; ``from_dict`` rejects unknown keys so a typo in a JSON preset fails loudly.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from openclap.builder import build, check_literals
from openclap.errors import ConfigError  # re-exported: openclap.config.ConfigError is public

AudioEncoderName = Literal["htsat", "cnn14"]
TextEncoderName = Literal["gpt2", "bert", "roberta"]
PoolingName = Literal["last", "count_nonpad", "cls", "mean", "pooler"]
PadModeName = Literal["repeat", "zero", "repeatpad"]


def _to_dict(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple):
        return [_to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _to_dict(v) for k, v in obj.items()}
    return obj


class _DictMixin:
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        """Build from a plain dict (e.g. parsed JSON); unknown keys raise ``ConfigError``."""
        return build(cls, data, cls.__name__, ConfigError)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form, JSON serialisable."""
        return _to_dict(self)


@dataclass(frozen=True)
class FrontendConfig(_DictMixin):
    """Log-mel front end: waveform at ``sample_rate`` -> (frames, n_mels) log power in dB."""

    sample_rate: int = 44100
    # msclap quirk: its HTSAT designs the filterbank for 32 kHz although audio arrives at 44.1 kHz.
    # None means "design the filterbank for sample_rate" (the physically correct choice).
    filterbank_sample_rate: int | None = None
    n_fft: int = 1024
    win_length: int = 1024
    hop_length: int = 320
    n_mels: int = 64
    f_min: float = 50.0
    f_max: float = 14000.0
    center: bool = True
    pad_mode: str = "reflect"
    amin: float = 1e-10
    top_db: float | None = None
    # Mel filterbank: "slaney" scale (librosa's default: torchlibrosa, msclap, LAION without fusion) or
    # "htk" (torchaudio's default: LAION / transformers fusion models); mel_norm "slaney" scales each
    # triangle to unit area, None leaves peaks at 1 (torchaudio's norm=None).
    mel_scale: str = "slaney"
    mel_norm: str | None = "slaney"
    # laion_clap quirk (hook.py, get_audio_embedding_from_filelist; its training data pipeline too): every
    # waveform is rounded through int16 (clip to [-1, 1], * 32767, truncate, / 32767) before the front end.
    # On for the LAION presets so embeddings match laion_clap on any file, not only on int16-exact audio.
    int16_round_trip: bool = False

    def __post_init__(self) -> None:
        if self.mel_scale not in ("slaney", "htk"):
            raise ConfigError(f"mel_scale must be 'slaney' or 'htk', got {self.mel_scale!r}")
        if self.mel_norm not in ("slaney", None):
            raise ConfigError(f"mel_norm must be 'slaney' or null, got {self.mel_norm!r}")
        if self.sample_rate <= 0:
            raise ConfigError(f"sample_rate must be positive, got {self.sample_rate}")
        if self.win_length > self.n_fft:
            raise ConfigError(f"win_length ({self.win_length}) must be <= n_fft ({self.n_fft})")
        if self.hop_length <= 0:
            raise ConfigError(f"hop_length must be positive, got {self.hop_length}")
        design_rate = self.filterbank_sample_rate or self.sample_rate
        if not 0 <= self.f_min < self.f_max <= design_rate / 2:
            raise ConfigError(
                f"need 0 <= f_min < f_max <= {design_rate / 2} Hz, got f_min={self.f_min}, f_max={self.f_max}"
            )
        if self.pad_mode not in ("reflect", "constant"):
            raise ConfigError(f"pad_mode must be 'reflect' or 'constant', got {self.pad_mode!r}")


@dataclass(frozen=True)
class HTSATConfig(_DictMixin):
    """HTSAT (Chen et al. 2022) sizes; the defaults are HTSAT-tiny as used by msclap-2023."""

    patch_size: int = 4
    patch_stride: tuple[int, int] = (4, 4)
    in_chans: int = 1
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (4, 8, 16, 32)
    window_size: int = 8
    spec_size: int = 256
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.1
    num_classes: int = 527
    # LAION's HTSAT with feature fusion adds an attention-fusion module over 4 views of long clips.
    enable_fusion: bool = False

    def __post_init__(self) -> None:
        if len(self.depths) != len(self.num_heads):
            raise ConfigError(f"depths {self.depths} and num_heads {self.num_heads} differ in length")

    @property
    def width(self) -> int:
        """Output feature size: embed_dim doubled at each of the len(depths)-1 patch mergings."""
        return self.embed_dim * 2 ** (len(self.depths) - 1)


@dataclass(frozen=True)
class CNN14Config(_DictMixin):
    """PANNs CNN14 (Kong et al. 2020) channel plan; defaults are the published CNN14."""

    channels: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048)
    num_classes: int = 527
    dropout: float = 0.2

    @property
    def width(self) -> int:
        return self.channels[-1]


@dataclass(frozen=True)
class AudioConfig(_DictMixin):
    """Audio tower: front end, clip policy and encoder."""

    encoder: AudioEncoderName = "htsat"
    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    htsat: HTSATConfig | None = None
    cnn14: CNN14Config | None = None
    duration: float = 7.0  # seconds the encoder sees per window
    pad_mode: PadModeName = "repeat"  # how clips shorter than `duration` are filled
    window_hop: float | None = None  # seconds between windows of long clips; None = duration / 2

    def __post_init__(self) -> None:
        check_literals(self, ConfigError, "audio")
        if self.encoder == "htsat" and self.htsat is None:
            object.__setattr__(self, "htsat", HTSATConfig())
        if self.encoder == "cnn14" and self.cnn14 is None:
            object.__setattr__(self, "cnn14", CNN14Config())
        if self.duration <= 0:
            raise ConfigError(f"duration must be positive, got {self.duration}")
        if self.window_hop is not None and not 0 < self.window_hop <= self.duration:
            raise ConfigError(f"window_hop must be in (0, duration={self.duration}], got {self.window_hop}")

    @property
    def sample_rate(self) -> int:
        return self.frontend.sample_rate

    @property
    def num_samples(self) -> int:
        """Samples in one encoder window."""
        return round(self.duration * self.sample_rate)

    @property
    def hop_seconds(self) -> float:
        return self.window_hop if self.window_hop is not None else self.duration / 2

    @property
    def width(self) -> int:
        """Feature size of the audio encoder before projection."""
        if self.encoder == "htsat":
            assert self.htsat is not None
            return self.htsat.width
        assert self.cnn14 is not None
        return self.cnn14.width


@dataclass(frozen=True)
class TextConfig(_DictMixin):
    """Text tower: a transformers architecture built from ``transformer`` kwargs, plus pooling rules."""

    encoder: TextEncoderName = "gpt2"
    # kwargs for transformers' GPT2Config / BertConfig / RobertaConfig (random init, no download).
    transformer: dict[str, Any] = field(default_factory=dict)
    # "last": the last token with attention_mask 1; "count_nonpad": position count(ids != pad_id) - 1,
    # msclap-2023's rule (it differs from "last" only when the text itself contains the pad token "!");
    # "pooler": BERT/RoBERTa's pooler output (dense + tanh over CLS), as LAION-CLAP uses.
    pooling: PoolingName = "last"
    max_length: int = 77
    # tokenizer: a bundled name (e.g. "gpt2"), or a directory with tokenizer files.
    tokenizer: str = "gpt2"
    # msclap-2023 appends " <|endoftext|>" and pools at that token.
    text_suffix: str = ""
    # msclap-2023 sets GPT-2's pad token to "!" (id 0) and pools at count(ids != 0) - 1.
    pad_token: str | None = None
    # "max_length" pads every batch to max_length (msclap); "longest" pads to the batch's longest.
    padding: Literal["max_length", "longest"] = "longest"
    # Texts longer than max_length tokens: "keep_suffix" cuts the text but keeps the tokens of
    # text_suffix (so the pooled end token survives); "right" cuts the tail; "none" never cuts and lets
    # the batch grow past max_length, as msclap does (its encode_plus pads to max_length without
    # truncation=True, so a long caption keeps all its tokens).
    truncation: Literal["keep_suffix", "right", "none"] = "keep_suffix"

    def __post_init__(self) -> None:
        check_literals(self, ConfigError, "text")
        if self.max_length <= 1:
            raise ConfigError(f"max_length must be > 1, got {self.max_length}")

    @property
    def width(self) -> int:
        """Hidden size of the text transformer (GPT-2 calls it n_embd)."""
        if self.encoder == "gpt2":
            return int(self.transformer.get("n_embd", 768))
        return int(self.transformer.get("hidden_size", 768))


@dataclass(frozen=True)
class ClapConfig(_DictMixin):
    """A whole CLAP model: two towers projected into an ``embed_dim`` joint space."""

    name: str = "custom"
    audio: AudioConfig = field(default_factory=AudioConfig)
    text: TextConfig = field(default_factory=TextConfig)
    embed_dim: int = 1024
    projection_dropout: float = 0.5
    # CLIP/msclap initialise the logit scale at log(1 / 0.07).
    logit_scale_init: float = math.log(1 / 0.07)
    # Projection style: "msclap" (linear1 -> GELU -> linear2 -> dropout, residual, LayerNorm)
    # or "laion" (Linear -> ReLU -> Linear, with biases).
    projection: Literal["msclap", "laion"] = "msclap"

    def __post_init__(self) -> None:
        if self.embed_dim <= 0:
            raise ConfigError(f"embed_dim must be positive, got {self.embed_dim}")
        if not 0 <= self.projection_dropout < 1:
            raise ConfigError(f"projection_dropout must be in [0, 1), got {self.projection_dropout}")
        check_literals(self, ConfigError)
