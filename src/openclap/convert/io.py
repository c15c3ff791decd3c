"""Reading peers' checkpoint files safely: pickles only with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import json
import logging
import os
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from openclap.errors import CheckpointError

logger = logging.getLogger(__name__)

# File names of a transformers model directory, in the order transformers itself prefers them.
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
HF_INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


class UnsafeCheckpointError(CheckpointError):
    """A pickled checkpoint needs arbitrary code to unpickle; openclap refuses to run it."""


def _torch_load(path: Path) -> Any:
    """``torch.load`` restricted to tensors and plain containers; other pickles are refused."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = str(exc).strip().splitlines()
        reason = next(
            (line for line in detail if "GLOBAL" in line or "Unsupported" in line),
            detail[0] if detail else "",
        )
        raise UnsafeCheckpointError(
            f"{path} is a pickle that needs arbitrary code to load ({reason.strip()}). openclap reads "
            "pickled checkpoints only with torch.load(weights_only=True), which allows tensors and plain "
            "containers, so a tampered or unusual file cannot run code. Use the official checkpoint file, "
            "or, only if you trust this file, re-save its state dict as tensors (e.g. as .safetensors) and "
            "pass that instead."
        ) from exc
    except (RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(f"{path} could not be read as a PyTorch checkpoint: {exc}") from exc


def _load_file(path: Path) -> Any:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return _torch_load(path)


def _load_hf_dir(path: Path) -> dict[str, Tensor]:
    """All tensors of a transformers model directory (single or sharded weights)."""
    for name in HF_WEIGHT_FILES:
        if (path / name).is_file():
            return _load_file(path / name)
    for name in HF_INDEX_FILES:
        index = path / name
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            out: dict[str, Tensor] = {}
            for shard in shards:
                out.update(_load_file(path / shard))
            return out
    raise FileNotFoundError(
        f"{path} is a directory without {' or '.join(HF_WEIGHT_FILES)}; pass a transformers ClapModel "
        "directory (config.json + weights) or a checkpoint file"
    )


def _unwrap(obj: Any, path: Path) -> dict[str, Tensor]:
    """The state dict inside a checkpoint: msclap's ``{'model': sd}``, LAION's ``{'state_dict': sd}``, or sd."""
    if isinstance(obj, dict):
        for key in ("model", "state_dict"):
            inner = obj.get(key)
            if isinstance(inner, dict) and inner and all(isinstance(v, Tensor) for v in inner.values()):
                return inner
        tensors = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
        if tensors and len(tensors) == len(obj):
            return tensors
        if tensors:
            logger.info("%s: ignoring %d non-tensor entries", path, len(obj) - len(tensors))
            return tensors
    raise CheckpointError(
        f"{path} holds no state dict (a dict of tensors, or one under 'model' or 'state_dict'); "
        f"found {type(obj).__name__} with keys {sorted(obj)[:10] if isinstance(obj, dict) else '-'}"
    )


def strip_prefix(state_dict: dict[str, Tensor], prefix: str = "module.") -> dict[str, Tensor]:
    """Remove a DDP/DataParallel ``module.`` prefix when every key has it."""
    if state_dict and all(k.startswith(prefix) for k in state_dict):
        return {k[len(prefix) :]: v for k, v in state_dict.items()}
    return state_dict


def load_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """The tensors of a checkpoint file or transformers directory, read safely, ``module.`` stripped."""
    p = Path(path)
    if p.is_dir():
        return strip_prefix(_load_hf_dir(p))
    if not p.is_file():
        from openclap.pretrained import missing_file_message

        raise FileNotFoundError(missing_file_message(str(p)))
    return strip_prefix(_unwrap(_load_file(p), p))
