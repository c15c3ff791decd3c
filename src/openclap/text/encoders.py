"""Text tower: a randomly initialised transformers model plus the pooling rule of each CLAP family.

``TextEncoder(cfg)`` builds GPT-2, BERT or RoBERTa from ``cfg.transformer`` kwargs (no download, no
network) and keeps it as ``self.model``, so state dict keys are ``model.<transformers keys>``. Pretrained
CLAP weights are loaded into it by the converters; ``load_transformer_weights`` loads a local transformers
checkpoint (e.g. GPT-2 base) for training from a pretrained language model.

Pooling (``cfg.pooling``), applied to the last hidden state (B, L, width):

- ``"last"``: the last token whose attention mask is 1 (right padding), i.e. ``mask.sum(-1) - 1``.
- ``"count_nonpad"``: position ``(input_ids != pad_token_id).sum(-1) - 1``, msclap-2023's rule
  (microsoft/CLAP ``msclap/models/clap.py``, ``TextEncoder.forward``: ``torch.ne(input_ids, 0).sum(-1) - 1``
  with pad "!" = 0). It equals "last" unless the text itself contains the pad token "!": then it pools
  earlier, one position per "!" (a quirk the published weights were trained with).
- ``"cls"``: position 0 (msclap-2022's BERT: ``last_hidden_state[:, 0, :]``).
- ``"mean"``: mean over positions with attention mask 1.
- ``"pooler"``: BERT/RoBERTa's pooler output (dense + tanh over position 0), as LAION-CLAP uses.

BERT and RoBERTa are built with their pooler (``add_pooling_layer=True``) whatever the pooling, so the
state dict has the same keys as msclap's/LAION's checkpoints (both build the text model with
``AutoModel.from_pretrained``, which keeps the pooler). When the pooling does not use it, the pooler's
parameters get ``requires_grad=False`` so that DDP does not complain about unused parameters.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch import nn
from transformers import (
    BertConfig,
    BertModel,
    GPT2Config,
    GPT2Model,
    PretrainedConfig,
    PreTrainedModel,
    RobertaConfig,
    RobertaModel,
)

from openclap.config import ConfigError, TextConfig

logger = logging.getLogger(__name__)

__all__ = ["TRANSFORMERS", "TextEncoder"]

# encoder name -> (transformers config class, model class)
TRANSFORMERS: dict[str, tuple[type[PretrainedConfig], type[PreTrainedModel]]] = {
    "gpt2": (GPT2Config, GPT2Model),
    "bert": (BertConfig, BertModel),
    "roberta": (RobertaConfig, RobertaModel),
}
_HAS_POOLER = {"bert", "roberta"}


class TextEncoder(nn.Module):
    """Token ids -> pooled text features ``(B, width)`` (before the projection).

    Args:
        cfg: text tower config (``encoder``, ``transformer`` kwargs, ``pooling``).
        pad_token_id: the tokenizer's pad id; used by ``pooling="count_nonpad"`` (msclap: 0).
        attn_implementation: ``"sdpa"`` (default, fused attention) or ``"eager"``.
    """

    def __init__(self, cfg: TextConfig, pad_token_id: int = 0, attn_implementation: str = "sdpa") -> None:
        super().__init__()
        if cfg.encoder not in TRANSFORMERS:
            raise ConfigError(f"text encoder must be one of {sorted(TRANSFORMERS)}, got {cfg.encoder!r}")
        if attn_implementation not in ("sdpa", "eager"):
            raise ValueError(f"attn_implementation must be 'sdpa' or 'eager', got {attn_implementation!r}")
        if cfg.pooling == "pooler" and cfg.encoder not in _HAS_POOLER:
            raise ConfigError(f"pooling='pooler' needs a BERT/RoBERTa encoder, got {cfg.encoder!r}")
        config_cls, model_cls = TRANSFORMERS[cfg.encoder]
        if attn_implementation == "sdpa" and not getattr(model_cls, "_supports_sdpa", False):
            attn_implementation = "eager"  # older transformers: no SDPA path for this model
        try:
            config = config_cls(**cfg.transformer, attn_implementation=attn_implementation)
        except TypeError as exc:
            raise ConfigError(f"TextConfig.transformer {cfg.transformer!r}: {exc}") from exc
        self.cfg = cfg
        self.pad_token_id = int(pad_token_id)
        self.attn_implementation = attn_implementation
        if cfg.encoder in _HAS_POOLER:
            self.model = model_cls(config, add_pooling_layer=True)
            if cfg.pooling != "pooler":
                for p in self.model.pooler.parameters():
                    p.requires_grad_(False)
        else:
            self.model = model_cls(config)
        self.width = int(config.hidden_size)
        if self.width != cfg.width:
            raise ConfigError(f"transformer hidden size {self.width} != TextConfig.width {cfg.width}")

    @property
    def max_positions(self) -> int:
        """Longest sequence the position embedding covers."""
        c = self.model.config
        if self.cfg.encoder == "gpt2":
            return int(c.n_positions)
        if self.cfg.encoder == "roberta":  # positions start after padding_idx (transformers' RoBERTa)
            return int(c.max_position_embeddings) - int(c.pad_token_id) - 1
        return int(c.max_position_embeddings)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """input_ids, attention_mask: (B, L), right padded -> pooled features (B, width)."""
        if input_ids.dim() != 2 or input_ids.shape != attention_mask.shape:
            raise ValueError(
                f"input_ids and attention_mask must both be (B, L); got {tuple(input_ids.shape)} and "
                f"{tuple(attention_mask.shape)}"
            )
        if input_ids.shape[1] > self.max_positions:
            raise ValueError(
                f"sequence length {input_ids.shape[1]} exceeds the {self.cfg.encoder} position limit "
                f"{self.max_positions}; shorten the texts or use TextConfig.truncation='keep_suffix'"
            )
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
        hidden = out.last_hidden_state  # (B, L, width)
        pooling = self.cfg.pooling
        if pooling == "pooler":
            return out.pooler_output  # (B, width)
        if pooling == "cls":
            return hidden[:, 0, :]
        if pooling == "mean":
            mask = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (B, L, 1)
            return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        if pooling == "last":
            index = attention_mask.sum(-1) - 1  # (B,)
        else:  # "count_nonpad": msclap-2023; a text made only of "!" gives -1, i.e. the last position.
            index = input_ids.ne(self.pad_token_id).sum(-1) - 1  # (B,)
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        return hidden[rows, index]  # (B, width)

    def load_transformer_weights(self, directory: str | os.PathLike[str]) -> None:
        """Load a local transformers checkpoint (``model.safetensors`` or ``pytorch_model.bin``, sharded or
        not) into ``self.model``; every parameter must be found with the right shape.

        Task heads in the checkpoint (e.g. GPT-2's ``lm_head``, BERT's ``cls.*``) are dropped and logged.
        Uses transformers' own loader (``local_files_only``, legacy key renames, ``weights_only`` pickles)
        with this model's config, then copies strictly.
        """
        path = Path(directory)
        if not path.is_dir():
            raise FileNotFoundError(
                f"{str(path)!r} is not a directory; pass a local transformers model directory holding "
                "model.safetensors or pytorch_model.bin"
            )
        _, model_cls = TRANSFORMERS[self.cfg.encoder]
        extra = {"add_pooling_layer": True} if self.cfg.encoder in _HAS_POOLER else {}
        loaded, info = model_cls.from_pretrained(
            str(path),
            config=self.model.config,
            local_files_only=True,
            output_loading_info=True,
            ignore_mismatched_sizes=True,  # reported in info["mismatched_keys"] and refused below, naming path
            **extra,
        )
        problems = {k: info.get(k) for k in ("missing_keys", "mismatched_keys", "error_msgs") if info.get(k)}
        if problems:
            raise ValueError(f"{str(path)!r} does not match the {self.cfg.encoder} text encoder: {problems}")
        if info.get("unexpected_keys"):
            logger.info(
                "ignored %d checkpoint keys not in the encoder: %s",
                len(info["unexpected_keys"]),
                sorted(info["unexpected_keys"])[:10],
            )
        self.model.load_state_dict(loaded.state_dict(), strict=True)
