"""Named models: architectures (``model_configs/<name>.json`` -> ``ClapConfig``) and bundled trained
models (``assets/models/<name>/``, a model directory shipped inside the package)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from openclap.config import ClapConfig


def _config_dir() -> resources.abc.Traversable:
    return resources.files("openclap") / "model_configs"


def _bundled_dir() -> resources.abc.Traversable:
    return resources.files("openclap") / "assets" / "models"


def list_models() -> list[str]:
    """Names of the architectures and bundled trained models shipped with openclap, sorted."""
    return sorted(set(preset_names(_config_dir())) | set(list_bundled_models()))


def list_bundled_models() -> list[str]:
    """Names of the trained models whose weights ship inside the package."""
    root = _bundled_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "config.json").is_file())


def bundled_model_dir(name: str) -> Path | None:
    """The model directory of a bundled trained model, or None."""
    path = _bundled_dir() / name
    return Path(str(path)) if (path / "config.json").is_file() else None


def preset_names(folder: resources.abc.Traversable) -> list[str]:
    """Names of the preset files (``<name>.json``) in a package folder, sorted."""
    return sorted(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json"))


def read_preset(
    folder: resources.abc.Traversable, name: str, config_type: type, known: list[str], label: str
) -> Any:
    """The config of preset ``name`` (``folder/<name>.json``, parsed by ``config_type.from_dict``); an
    unknown name lists the ``known`` ones, and the file's ``name`` must be its file name."""
    path = folder / f"{name}.json"
    if not path.is_file():
        raise ValueError(
            f"unknown {label} {name!r}; known {label}s: {', '.join(known)} (or pass a {label} directory)"
        )
    config = config_type.from_dict(json.loads(path.read_text()))
    if config.name != name:
        raise ValueError(f"{path} declares name {config.name!r}; the file name and name must agree")
    return config


def get_model_config(name: str) -> ClapConfig:
    """The ``ClapConfig`` of a named architecture or bundled model; an unknown name lists the known ones."""
    bundled = bundled_model_dir(name)
    if not (_config_dir() / f"{name}.json").is_file() and bundled is not None:
        return ClapConfig.from_dict(json.loads((bundled / "config.json").read_text()))
    return read_preset(_config_dir(), name, ClapConfig, list_models(), "model")
