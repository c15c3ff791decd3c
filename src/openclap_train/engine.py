"""Optimiser, learning-rate schedule, freezing and BatchNorm handling."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from openclap.model import ClapModel
from openclap_train.config import TrainConfig

# Heads that exist for checkpoint compatibility but never feed the contrastive loss: HTSAT's
# token-semantic classifier (tscam_conv, head) and CNN14's AudioSet classifier. They are frozen so that
# optimisers and DDP see only parameters that get gradients.
UNUSED_AUDIO_HEADS = ("tscam_conv.", "head.", "fc_audioset.")


def freeze_parameters(model: ClapModel, config: TrainConfig) -> None:
    """Freeze unused heads, and whole towers per ``freeze_audio``/``freeze_text`` (projections stay trainable)."""
    for name, p in model.audio_encoder.named_parameters():
        if name.startswith(UNUSED_AUDIO_HEADS):
            p.requires_grad_(False)
    if config.freeze_audio:
        model.audio_encoder.requires_grad_(False)
    if config.freeze_text:
        model.text_encoder.requires_grad_(False)


def set_batchnorm_mode(model: nn.Module, mode: str) -> None:
    """After ``model.train()``: put BatchNorm layers in eval mode when ``mode == "frozen"`` (running stats)."""
    if mode == "frozen":
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


def set_train_mode(model: nn.Module, config: TrainConfig) -> None:
    """Training mode with the config's BatchNorm policy; frozen towers stay in eval mode (no dropout)."""
    model.train()
    set_batchnorm_mode(model, config.batchnorm)
    inner = model.module if hasattr(model, "module") else model
    if config.freeze_audio:
        inner.audio_encoder.eval()
    if config.freeze_text:
        inner.text_encoder.eval()


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two groups: matrices/convolutions with weight decay; norms, biases, embeddings' 1-d params and
    the logit scale without (CLIP's rule: decay only tensors with ndim >= 2)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or name.endswith("logit_scale") or ".bn" in name or "norm" in name.lower():
            no_decay.append(p)
        else:
            decay.append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW (decoupled decay) or Adam (the paper's choice: Adam, lr 1e-3) over the trainable parameters."""
    groups = param_groups(model, config.weight_decay)
    if config.optimizer == "adam":  # Adam's weight_decay is an L2 term, applied to the decay group only
        return torch.optim.Adam(groups, lr=config.lr, betas=config.betas, eps=config.eps)
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, eps=config.eps)


class LrSchedule:
    """Linear warmup, then cosine decay to ``min_lr_ratio * lr``, constant, or reduce-on-plateau.

    ``lr_at(step)`` is a pure function of the step (plus the plateau state), so it needs no replay on
    resume; ``observe(value)`` feeds the plateau rule (lower is better).
    """

    def __init__(self, config: TrainConfig, total_steps: int) -> None:
        self.kind, self.base_lr, self.warmup = config.schedule, config.lr, config.warmup_steps
        self.total, self.min_ratio = max(1, total_steps), config.min_lr_ratio
        self.patience, self.factor = config.plateau_patience, config.plateau_factor
        self.plateau_scale, self.best, self.bad_evals = 1.0, math.inf, 0

    def lr_at(self, step: int) -> float:
        """Learning rate of optimiser step ``step`` (0-based)."""
        if self.warmup and step < self.warmup:
            return self.base_lr * (step + 1) / self.warmup
        if self.kind == "cosine":
            progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
            ratio = self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
            return self.base_lr * ratio
        if self.kind == "plateau":
            return self.base_lr * self.plateau_scale
        return self.base_lr

    def observe(self, value: float) -> None:
        """Plateau rule: after ``patience`` observations without a new best, multiply the lr by ``factor``."""
        if self.kind != "plateau":
            return
        if math.isinf(self.best) or value < self.best - 1e-4 * abs(self.best):
            self.best, self.bad_evals = value, 0
        else:
            self.bad_evals += 1
            if self.bad_evals > self.patience:
                self.plateau_scale *= self.factor
                self.bad_evals = 0

    def state_dict(self) -> dict[str, Any]:
        return {"plateau_scale": self.plateau_scale, "best": self.best, "bad_evals": self.bad_evals}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.plateau_scale, self.best = float(state["plateau_scale"]), float(state["best"])
        self.bad_evals = int(state["bad_evals"])


def step_seed(seed: int, step: int, rank: int) -> int:
    """Seed of the global torch RNG for optimiser step ``step`` on ``rank`` (dropout, drop-path).

    Reseeding every step makes the model's randomness a function of (seed, step, rank), so a resumed run
    draws what the uninterrupted run drew without replaying RNG history.
    """
    return (seed * 1_000_003 + step * 8191 + rank * 131_071) % (1 << 62)


def optimizer_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    batches: Iterator[dict[str, Any]],
    loss_of: Callable[[dict[str, Any]], torch.Tensor],
    grad_accum: int,
    grad_clip: float | None,
    distributed: bool,
) -> tuple[float, float]:
    """One optimiser step over ``grad_accum`` micro-batches -> (this rank's mean loss, seconds waiting for data).

    ``loss_of(batch)`` runs the forward pass (under its own autocast) and returns the scalar loss; DDP syncs
    gradients only on the last micro-batch.
    """
    optimizer.zero_grad(set_to_none=True)
    step_loss, wait = 0.0, 0.0
    for a in range(grad_accum):
        t0 = time.perf_counter()
        batch = next(batches)
        wait += time.perf_counter() - t0
        sync = contextlib.nullcontext() if (not distributed or a == grad_accum - 1) else model.no_sync()
        with sync:
            loss = loss_of(batch)
            scaler.scale(loss / grad_accum).backward()
        step_loss += loss.item() / grad_accum
    if grad_clip is not None:
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return step_loss, wait
