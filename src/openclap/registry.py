"""Named models: architectures (``model_configs/<name>.json`` -> ``ClapConfig``) and bundled trained
models (``assets/models/<name>/``, a model directory shipped inside the package)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from openclap.config import ClapConfig


def _config_dir() -> resources.abc.Traversable:
    return resources.files("openclap") / "model_configs"


def _bundled_dir() -> resources.abc.Traversable:
    return resources.files("openclap") / "assets" / "models"


def list_models() -> list[str]:
    """Names of the architectures and bundled trained models shipped with openclap, sorted."""
    names = {p.name[: -len(".json")] for p in _config_dir().iterdir() if p.name.endswith(".json")}
    return sorted(names | set(list_bundled_models()))


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


def get_model_config(name: str) -> ClapConfig:
    """The ``ClapConfig`` of a named architecture; an unknown name lists the known ones."""
    path = _config_dir() / f"{name}.json"
    bundled = bundled_model_dir(name)
    if not path.is_file() and bundled is not None:
        return ClapConfig.from_dict(json.loads((bundled / "config.json").read_text()))
    if not path.is_file():
        raise ValueError(
            f"unknown model {name!r}; known models: {', '.join(list_models())} (or pass a model directory)"
        )
    config = ClapConfig.from_dict(json.loads(path.read_text()))
    if config.name != name:
        raise ValueError(
            f"model_configs/{name}.json declares name {config.name!r}; the file name and name must agree"
        )
    return config
