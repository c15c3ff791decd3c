"""Hand-over of a pretrained audio tower to CLAP: the ``final/`` directory of ``openclap pretrain-audio``.

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
from safetensors.torch import load_file, save_file
from torch import nn

from openclap.config import ClapConfig
from openclap.factory import CONFIG_NAME, CheckpointError
from openclap.model import ClapModel
from openclap_train.multitask.model import TOWER_PREFIXES

TOWER_WEIGHTS = "audio_tower.safetensors"
TASKS_NAME = "tasks.json"


def is_audio_tower_dir(path: str | os.PathLike) -> bool:
    """True when ``path`` holds an audio tower (``config.json`` + ``audio_tower.safetensors``)."""
    return (Path(path) / CONFIG_NAME).is_file() and (Path(path) / TOWER_WEIGHTS).is_file()


def save_audio_tower(tower: dict[str, torch.Tensor], config: ClapConfig, directory: str | os.PathLike,
                     tasks: list[dict[str, Any]] | None = None) -> Path:
    """Write an audio-tower directory (atomic weight file)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    bad = sorted(k for k in tower if not k.startswith(TOWER_PREFIXES))
    if bad:
        raise ValueError(f"an audio tower holds only {TOWER_PREFIXES} keys; got {bad[:5]}")
    (out / CONFIG_NAME).write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    tmp = out / (TOWER_WEIGHTS + ".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in tower.items()}, str(tmp),
              metadata={"format": "pt", "openclap_audio_tower": config.name})
    os.replace(tmp, out / TOWER_WEIGHTS)
    if tasks is not None:
        (out / TASKS_NAME).write_text(json.dumps(tasks, indent=2) + "\n")
    return out


def read_audio_tower(directory: str | os.PathLike) -> tuple[ClapConfig, dict[str, torch.Tensor]]:
    """(config, tensors) of an audio-tower directory."""
    d = Path(directory)
    if not is_audio_tower_dir(d):
        raise FileNotFoundError(f"{d} is not an audio-tower directory (needs {CONFIG_NAME} and {TOWER_WEIGHTS}); "
                                "pass the final/ directory of an `openclap pretrain-audio` run")
    config = ClapConfig.from_dict(json.loads((d / CONFIG_NAME).read_text()))
    return config, load_file(str(d / TOWER_WEIGHTS))


def _diff(a: Any, b: Any, prefix: str = "audio") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in _diff(a.get(k), b.get(k), f"{prefix}.{k}")]
    return [] if a == b else [f"{prefix}: tower {a!r} vs model {b!r}"]


def load_audio_tower(model: ClapModel | nn.Module, directory: str | os.PathLike) -> None:
    """Load a pretrained audio tower into ``model`` strictly (same audio config, same keys and shapes).

    ``model`` is a ``ClapModel`` or any module with ``audio_frontend`` and ``audio_encoder`` and an
    ``audio_config`` attribute (e.g. ``MultiTaskAudioModel``); its other parameters are left untouched.
    """
    config, tower = read_audio_tower(directory)
    audio = model.config.audio if isinstance(model, ClapModel) else model.audio_config
    name = model.config.name if isinstance(model, ClapModel) else type(model).__name__
    diffs = _diff(config.audio.to_dict(), audio.to_dict())
    if diffs:
        raise CheckpointError(f"audio tower {directory} was built for another audio config ({'; '.join(diffs[:5])}); "
                              "use the same model preset and model_overrides.audio as the pretraining run")
    own = {k: v for k, v in model.state_dict().items() if k.startswith(TOWER_PREFIXES)}
    missing, unexpected = sorted(set(own) - set(tower)), sorted(set(tower) - set(own))
    shapes = [f"{k}: tower {tuple(tower[k].shape)} vs model {tuple(own[k].shape)}"
              for k in sorted(set(own) & set(tower)) if own[k].shape != tower[k].shape]
    if missing or unexpected or shapes:
        raise CheckpointError(f"audio tower {directory} does not fit model {name!r}: "
                              f"{len(missing)} missing {missing[:5]}, {len(unexpected)} unexpected {unexpected[:5]}, "
                              f"{len(shapes)} shape mismatches {shapes[:5]}")
    for prefix, module in (("audio_frontend.", model.audio_frontend), ("audio_encoder.", model.audio_encoder)):
        module.load_state_dict({k[len(prefix):]: v for k, v in tower.items() if k.startswith(prefix)}, strict=True)


def train_clap_with_audio_tower(config: Any, run_dir: str | os.PathLike, audio_dir: str | os.PathLike,
                                resume: str | None = None) -> Any:
    """``openclap train`` (``openclap_train.train.train``) whose CLAP audio tower starts from ``audio_dir``.

    When the trainer's config has an ``init_audio`` key it is used as is; otherwise (until the trainer
    grows that key) the trainer's ``prepare_model`` is wrapped for the duration of the call so that the
    tower is loaded, strictly, right after the model is built (before a resumed checkpoint, which then
    overrides it). ``run_dir/init_audio.json`` records where the tower came from.
    """
    import importlib

    trainer = importlib.import_module("openclap_train.train")  # the module (the package exports a `train` function)

    audio_dir = Path(audio_dir)
    read_audio_tower(audio_dir)  # fail early, before the trainer starts, if it is not a tower directory
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    (Path(run_dir) / "init_audio.json").write_text(json.dumps({"init_audio": str(audio_dir.resolve())}) + "\n")
    if hasattr(config, "init_audio"):
        config.init_audio = str(audio_dir)
        return trainer.train(config, run_dir, resume=resume)
    original = trainer.prepare_model

    def prepare_model(cfg: Any, rdir: Path, info: Any) -> Any:
        model, tokenizer = original(cfg, rdir, info)
        load_audio_tower(model, audio_dir)
        return model, tokenizer

    trainer.prepare_model = prepare_model
    try:
        return trainer.train(config, run_dir, resume=resume)
    finally:
        trainer.prepare_model = original
