"""Errors and state-dict checks shared by the factories, the converters and the trainer.

This module imports nothing else from openclap, so any module may use it without an import cycle.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where it is used: openclap.onnx imports this module without torch
    import torch


class ConfigError(ValueError):
    """A configuration value or key is invalid."""


class AudioLoadError(ValueError):
    """Audio could not be loaded, or was loaded but is unusable (empty, silent, NaN).

    ``path`` is the offending file, or ``None`` for in-memory input. ``kind`` is ``"not audio"``,
    ``"no audio stream"`` or ``"unsupported codec"`` for those cases (the message then starts with it),
    else ``None``.
    """

    def __init__(
        self, message: str, path: str | os.PathLike[str] | None = None, kind: str | None = None
    ) -> None:
        super().__init__(message)
        self.path = None if path is None else str(path)
        self.kind = kind


class CheckpointError(ValueError):
    """A checkpoint does not fit the model it is loaded into."""


def state_dict_problems(own: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor]) -> list[str]:
    """Human-readable differences between a model's and a checkpoint's keys and shapes (empty if none)."""
    missing = sorted(set(own) - set(given))
    unexpected = sorted(set(given) - set(own))
    wrong_shape = [
        f"{k}: checkpoint {tuple(given[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(given))
        if own[k].shape != given[k].shape
    ]
    problems = []
    if wrong_shape:
        problems.append(f"{len(wrong_shape)} shape mismatch(es): " + "; ".join(wrong_shape[:5]))
    if missing:
        problems.append(f"{len(missing)} missing key(s): {missing[:5]}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {unexpected[:5]}")
    return problems


def check_state_dict(
    own: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor], what: str, fix: str
) -> None:
    """Raise ``CheckpointError`` naming every missing, unexpected or mis-shaped key (``what`` does not fit ...;
    ``fix`` says what to do)."""
    problems = state_dict_problems(own, given)
    if problems:
        raise CheckpointError(f"{what}: " + " | ".join(problems) + f". {fix}")


def state_dict_fingerprint(
    state_dict: Mapping[str, torch.Tensor], extra: Any = None, prefixes: Iterable[str] | None = None
) -> str:
    """Hex digest over every tensor's name, shape, dtype and bytes (and ``extra``, JSON-serialised).

    Bytes, not sums: a sign flip or two swapped rows change it. ``prefixes`` keeps only keys starting
    with one of them (e.g. the audio tower's).
    """
    import torch

    keep = tuple(prefixes) if prefixes is not None else None
    digest = hashlib.blake2b(digest_size=16)
    if extra is not None:
        digest.update(json.dumps(extra, sort_keys=True, default=str).encode())
    for name, tensor in sorted(state_dict.items()):
        if keep is not None and not name.startswith(keep):
            continue
        t = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def model_fingerprint(model: torch.nn.Module) -> str:
    """A short hash of a model's config and weights (bulk jobs and indexes): results of another model are
    never reused. A copy that remembers its source's fingerprint (``openclap_fingerprint``, set by
    ``bulk.speed.quantize_int8``) returns that."""
    known = getattr(model, "openclap_fingerprint", None)
    if known is not None:
        return known
    config = getattr(model, "config", None)
    extra = config.to_dict() if config is not None and hasattr(config, "to_dict") else None
    return state_dict_fingerprint(model.state_dict(), extra=extra)[:16]
