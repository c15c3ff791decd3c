"""Training checkpoints: atomic writes, keep the last K, ``--resume latest``.

A checkpoint (``checkpoints/step_00001234.pt``, a ``torch.save`` dict loadable with ``weights_only=True``)
holds: ``model`` (state dict), ``optimizer``, ``schedule``, ``scaler``, ``rng`` (torch CPU/CUDA states),
``step`` (optimiser steps done), ``epoch`` and ``step_in_epoch`` (the data position), ``config`` (the
resolved training config), ``model_config`` and ``version`` (openclap's).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^step_(\d{8,})\.pt$")


def checkpoint_path(directory: str | Path, step: int) -> Path:
    """Where the checkpoint of ``step`` lives."""
    return Path(directory) / f"step_{step:08d}.pt"


def list_checkpoints(directory: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of complete checkpoints in ``directory``, oldest first (temporary files ignored)."""
    d = Path(directory)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The newest checkpoint in ``directory``, or None."""
    found = list_checkpoints(directory)
    return found[-1][1] if found else None


def save_checkpoint(state: dict[str, Any], directory: str | Path, step: int, keep: int) -> Path:
    """Write ``state`` atomically (temporary file, fsync, ``os.replace``) and delete all but the last ``keep``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    final = checkpoint_path(d, step)
    tmp = final.with_name(final.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    for _, old in list_checkpoints(d)[:-keep]:
        old.unlink(missing_ok=True)
    return final


def load_checkpoint_file(path: str | Path) -> dict[str, Any]:
    """Read a training checkpoint (tensors and plain values only: ``weights_only=True``)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(
            f"checkpoint {p} not found; pass --resume latest or a checkpoints/step_*.pt file"
        )
    state = torch.load(p, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "model" not in state or "step" not in state:
        raise ValueError(f"{p} is not an openclap training checkpoint (no 'model'/'step' entries)")
    return state


def rng_state() -> dict[str, Any]:
    """Torch RNG states of this process (CPU and every CUDA device)."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` returned."""
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def find_resume_checkpoint(resume: str, checkpoints_dir: Path) -> str | None:
    """The checkpoint ``--resume`` names: ``latest`` (None, with a warning, when there is none) or a path."""
    found = latest_checkpoint(checkpoints_dir) if resume == "latest" else Path(resume)
    if found is None:
        logger.warning("--resume latest: no checkpoint in %s, starting from scratch", checkpoints_dir)
    return str(found) if found is not None else None
