"""Hand-over of a pretrained audio tower to CLAP: the ``final/`` directory of ``openclap pretrain-audio``.

``openclap pretrain-audio`` writes an audio-tower directory; ``openclap train`` starts from it with
``init_audio: DIR`` (``load_audio_tower``, which also reads a CLAP model directory or a ``.safetensors`` file).
An audio-tower directory holds:

    config.json               the full ClapConfig the tower was built from (preset + model_overrides)
    audio_tower.safetensors   the tower's tensors under ClapModel's names (audio_frontend.*, audio_encoder.*)
    tasks.json                the tasks it was trained on (types, classes, normalisation, last metrics)

The task heads are not part of it. ``load_audio_tower(model, DIR)`` loads it into a ``ClapModel`` strictly:
the audio configs must be equal and every key and shape must match, or a ``CheckpointError`` names them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from openclap.config import ClapConfig
from openclap.errors import CheckpointError, check_state_dict
from openclap.factory import CONFIG_NAME, WEIGHTS_NAME, write_safetensors
from openclap.model import ClapModel

# the tower's keys in ClapModel (and in the multi-task model, whose tower has the same names)
TOWER_PREFIXES = ("audio_frontend.", "audio_encoder.")

TOWER_WEIGHTS = "audio_tower.safetensors"
TASKS_NAME = "tasks.json"


def is_audio_tower_dir(path: str | os.PathLike) -> bool:
    """True when ``path`` holds an audio tower (``config.json`` + ``audio_tower.safetensors``)."""
    return (Path(path) / CONFIG_NAME).is_file() and (Path(path) / TOWER_WEIGHTS).is_file()


def save_audio_tower(
    tower: dict[str, torch.Tensor],
    config: ClapConfig,
    directory: str | os.PathLike,
    tasks: list[dict[str, Any]] | None = None,
) -> Path:
    """Write an audio-tower directory (atomic weight file)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    bad = sorted(k for k in tower if not k.startswith(TOWER_PREFIXES))
    if bad:
        raise ValueError(f"an audio tower holds only {TOWER_PREFIXES} keys; got {bad[:5]}")
    (out / CONFIG_NAME).write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    write_safetensors({k: v.detach().cpu().contiguous() for k, v in tower.items()}, out / TOWER_WEIGHTS)
    if tasks is not None:
        (out / TASKS_NAME).write_text(json.dumps(tasks, indent=2) + "\n")
    return out


def read_audio_tower(directory: str | os.PathLike) -> tuple[ClapConfig, dict[str, torch.Tensor]]:
    """(config, tensors) of an audio-tower directory."""
    d = Path(directory)
    if not is_audio_tower_dir(d):
        raise FileNotFoundError(
            f"{d} is not an audio-tower directory (needs {CONFIG_NAME} and {TOWER_WEIGHTS}); "
            "pass the final/ directory of an `openclap pretrain-audio` run"
        )
    config = ClapConfig.from_dict(json.loads((d / CONFIG_NAME).read_text()))
    return config, load_file(str(d / TOWER_WEIGHTS))


def _diff(a: Any, b: Any, prefix: str = "audio") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in _diff(a.get(k), b.get(k), f"{prefix}.{k}")]
    return [] if a == b else [f"{prefix}: tower {a!r} vs model {b!r}"]


def load_audio_tower(model: ClapModel | nn.Module, source: str | os.PathLike) -> None:
    """Load an audio tower into ``model`` strictly; its other parameters are left untouched.

    ``source``: an audio-tower directory (its audio config must equal the model's), a CLAP model directory
    or a ``.safetensors`` file (its ``audio_frontend.*``/``audio_encoder.*`` tensors). ``model`` is a
    ``ClapModel`` or any module with ``audio_frontend``, ``audio_encoder`` and ``audio_config`` (e.g.
    ``MultiTaskAudioModel``). Every tower key must be present with the right shape (``CheckpointError``).
    """
    path = Path(source)
    audio = model.config.audio if isinstance(model, ClapModel) else model.audio_config
    name = model.config.name if isinstance(model, ClapModel) else type(model).__name__
    if is_audio_tower_dir(path):
        config, tower = read_audio_tower(path)
        diffs = _diff(config.audio.to_dict(), audio.to_dict())
        if diffs:
            raise CheckpointError(
                f"audio tower {path} was built for another audio config ({'; '.join(diffs[:5])}); "
                "use the same model preset and model_overrides.audio as the pretraining run"
            )
    else:
        if path.is_dir():
            if not (path / WEIGHTS_NAME).is_file():
                raise FileNotFoundError(
                    f"{path} is not an audio-tower directory ({TOWER_WEIGHTS}) nor a model directory "
                    f"({WEIGHTS_NAME}); pass the final/ directory of an `openclap pretrain-audio` run"
                )
            path = path / WEIGHTS_NAME
        elif not path.is_file():
            raise FileNotFoundError(
                f"init_audio {path} not found; give an audio-tower/model directory or .safetensors"
            )
        tower = {k: v for k, v in load_file(str(path)).items() if k.startswith(TOWER_PREFIXES)}
    own = {k: v for k, v in model.state_dict().items() if k.startswith(TOWER_PREFIXES)}
    check_state_dict(
        own,
        tower,
        f"{source} does not fit the audio tower of {name!r}",
        "Was it trained with the same audio config (model preset and model_overrides.audio)?",
    )
    for prefix, module in (
        ("audio_frontend.", model.audio_frontend),
        ("audio_encoder.", model.audio_encoder),
    ):
        module.load_state_dict(
            {k[len(prefix) :]: v for k, v in tower.items() if k.startswith(prefix)}, strict=True
        )
