"""The multi-task model: CLAP's audio tower (front end + encoder) and one head per task, and the losses.

State-dict keys of the tower are those of ``ClapModel`` (``audio_frontend.*``, ``audio_encoder.*``), so the
pretrained tower drops into a CLAP model unchanged; heads live under ``heads.<task>.*``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from openclap.audio.encoders import build_audio_encoder
from openclap.audio.frontend import LogMelFrontend
from openclap.config import AudioConfig
from openclap_train.audio_tower import TOWER_PREFIXES
from openclap_train.multitask.config import HeadConfig


class TaskHead(nn.Module):
    """Pooled features (B, width) -> task outputs (B, C): linear, or Linear-GELU-Dropout-Linear."""

    def __init__(self, width: int, num_outputs: int, cfg: HeadConfig) -> None:
        super().__init__()
        self.drop = nn.Dropout(cfg.dropout)
        if cfg.hidden:
            self.net: nn.Module = nn.Sequential(
                nn.Linear(width, cfg.hidden),
                nn.GELU(),
                nn.Dropout(cfg.dropout),
                nn.Linear(cfg.hidden, num_outputs),
            )
        else:
            self.net = nn.Linear(width, num_outputs)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(self.drop(features))


class MultiTaskAudioModel(nn.Module):
    """Waveform -> audio features -> every task's outputs (all heads run on every row, masks pick the loss)."""

    def __init__(self, audio: AudioConfig, heads: dict[str, int], head_cfg: HeadConfig) -> None:
        super().__init__()
        self.audio_config = audio
        self.audio_frontend = LogMelFrontend(audio.frontend)
        self.audio_encoder = build_audio_encoder(audio)
        self.heads = nn.ModuleDict({name: TaskHead(audio.width, n, head_cfg) for name, n in heads.items()})

    def features(self, waveform: torch.Tensor) -> torch.Tensor:
        """(B, samples) at the model's rate -> (B, width) pooled encoder features."""
        if waveform.ndim != 2:
            raise ValueError(f"waveform must be (batch, samples), got shape {tuple(waveform.shape)}")
        return self.audio_encoder(self.audio_frontend(waveform)).features

    def forward(self, waveform: torch.Tensor) -> dict[str, torch.Tensor]:
        """Outputs of every head, ``{task: (B, C)}``; running all heads keeps every parameter in the graph (DDP)."""
        feats = self.features(waveform)
        return {name: head(feats) for name, head in self.heads.items()}

    def tower_state_dict(self) -> dict[str, torch.Tensor]:
        """The audio tower's tensors under ``ClapModel``'s key names (heads dropped)."""
        return {k: v for k, v in self.state_dict().items() if k.startswith(TOWER_PREFIXES)}


def task_loss(kind: str, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-row loss (N,): cross-entropy (single_label), mean BCE over classes (multi_label), MSE (regression)."""
    if kind == "single_label":
        return F.cross_entropy(outputs, targets, reduction="none")
    if kind == "multi_label":
        return F.binary_cross_entropy_with_logits(outputs, targets, reduction="none").mean(dim=1)
    if kind == "regression":
        return F.mse_loss(outputs.squeeze(-1), targets, reduction="none")
    raise ValueError(f"unknown task type {kind!r}; use single_label, multi_label or regression")


def multitask_loss(
    outputs: dict[str, torch.Tensor],
    task_ids: torch.Tensor,
    targets: list[torch.Tensor],
    kinds: list[str],
    names: list[str],
    weights: list[float],
) -> tuple[torch.Tensor, dict[str, tuple[float, int]]]:
    """Weighted mean of per-row losses over the batch; also ``{task: (summed loss, rows)}`` for logging.

    ``targets[t]`` holds the targets of the rows of task ``t`` in batch order. Every head contributes (with
    weight zero when absent), so that all parameters get a gradient on every rank.
    """
    total = torch.zeros((), device=task_ids.device)
    parts: dict[str, tuple[float, int]] = {}
    batch = len(task_ids)
    for t, (name, kind, weight) in enumerate(zip(names, kinds, weights)):
        mask = task_ids == t
        rows = int(mask.sum())
        if rows == 0:
            total = total + 0.0 * outputs[name].sum()
            continue
        losses = task_loss(kind, outputs[name][mask].float(), targets[t])
        total = total + weight * losses.sum() / batch
        parts[name] = (float(losses.detach().sum()), rows)
    return total, parts
