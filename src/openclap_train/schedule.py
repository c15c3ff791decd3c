"""The learning-rate schedule of every task: linear warmup, then cosine to a floor, constant, or plateau."""

from __future__ import annotations

import math
from typing import Any

from openclap_train.config import OptimConfig


class LrSchedule:
    """Linear warmup, then cosine decay to ``min_lr_ratio * lr``, constant, or reduce-on-plateau.

    ``lr_at(step)`` is a pure function of the step (plus the plateau state), so it needs no replay on
    resume; ``observe(value)`` feeds the plateau rule (lower is better).
    """

    def __init__(self, config: OptimConfig, total_steps: int) -> None:
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
