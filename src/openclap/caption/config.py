"""Typed configuration of a captioning model (msclap's "clapcap" family) and its named presets.

A ``CaptionConfig`` describes: the audio tower (the same ``AudioConfig`` + projection fields as a
``ClapConfig``, so a CLAP model's audio tower loads into it key for key), the mapping network that turns
the audio embedding into ``prefix_length`` decoder input vectors, and the GPT-2 decoder with its tokenizer
(a ``TextConfig``: ``transformer`` holds ``GPT2Config`` kwargs; ``max_length`` is the longest caption, in
tokens, that generation produces).

Presets live in ``openclap/caption/configs/<name>.json`` (apart from ``openclap/model_configs``, whose
files must all parse as ``ClapConfig``); ``list_caption_models()`` names them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import Literal

from openclap.builder import check_literals
from openclap.config import AudioConfig, ConfigError, TextConfig, _DictMixin
from openclap.registry import preset_names, read_preset

MapperType = Literal["transformer", "mlp"]


@dataclass(frozen=True)
class MapperConfig(_DictMixin):
    """Mapping network: audio embedding (B, embed_dim) -> decoder prefix (B, prefix_length, width).

    Defaults are msclap's clapcap (``msclap/configs/config_clapcap.yml``: mapping_type transformer,
    prefix_length 40, prefix_length_clip 40, num_layers 8; ``msclap/models/mapper.py``: 8 heads,
    MLP ratio 2, ReLU, attention projections without bias).
    """

    type: MapperType = "transformer"
    prefix_length: int = 40
    # Transformer mapper: the embedding is first expanded into clip_length vectors that the transformer
    # reads next to prefix_length learnt constants; the outputs at the constants are the prefix.
    clip_length: int = 40
    num_layers: int = 8
    num_heads: int = 8
    mlp_ratio: float = 2.0
    dropout: float = 0.0

    def __post_init__(self) -> None:
        check_literals(self, ConfigError, "mapper")
        if self.prefix_length < 1 or self.clip_length < 1:
            raise ConfigError(
                f"prefix_length and clip_length must be >= 1, got {self.prefix_length} and {self.clip_length}"
            )
        if self.num_layers < 1 or self.num_heads < 1:
            raise ConfigError(
                f"num_layers and num_heads must be >= 1, got {self.num_layers}, {self.num_heads}"
            )
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"mapper dropout must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class CaptionConfig(_DictMixin):
    """A whole captioning model: audio tower -> embedding -> mapper -> GPT-2 decoder."""

    name: str = "custom-caption"
    audio: AudioConfig = field(default_factory=AudioConfig)
    embed_dim: int = 1024
    projection: Literal["msclap", "laion"] = "msclap"
    projection_dropout: float = 0.5
    # msclap's clapcap L2-normalises the audio embedding before the mapper (normalize_prefix: True).
    normalize_prefix: bool = True
    mapper: MapperConfig = field(default_factory=MapperConfig)
    text: TextConfig = field(default_factory=lambda: TextConfig(max_length=67))

    def __post_init__(self) -> None:
        if self.embed_dim <= 0:
            raise ConfigError(f"embed_dim must be positive, got {self.embed_dim}")
        if self.text.encoder != "gpt2":
            raise ConfigError(f"the caption decoder must be gpt2, got text.encoder={self.text.encoder!r}")
        check_literals(self, ConfigError)
        width = self.text.width
        if self.mapper.type == "transformer" and width % self.mapper.num_heads:
            raise ConfigError(
                f"decoder width {width} is not divisible by mapper.num_heads {self.mapper.num_heads}"
            )
        positions = int(self.text.transformer.get("n_positions", 1024))
        if self.mapper.prefix_length + self.text.max_length > positions:
            raise ConfigError(
                f"prefix_length {self.mapper.prefix_length} + text.max_length {self.text.max_length} exceeds "
                f"the decoder's n_positions {positions}; lower max_length or raise n_positions"
            )


def _config_dir() -> resources.abc.Traversable:
    return resources.files("openclap.caption") / "configs"


def list_caption_models() -> list[str]:
    """Names of the captioning presets shipped with openclap, sorted."""
    return preset_names(_config_dir())


def get_caption_config(name: str) -> CaptionConfig:
    """The ``CaptionConfig`` of a named preset; an unknown name lists the known ones."""
    return read_preset(_config_dir(), name, CaptionConfig, list_caption_models(), "caption model")
