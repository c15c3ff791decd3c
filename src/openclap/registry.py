"""Named architectures: each ``model_configs/<name>.json`` parses into a ``ClapConfig``."""

from __future__ import annotations

import json
from importlib import resources

from openclap.config import ClapConfig


def _config_dir() -> resources.abc.Traversable:
    return resources.files("openclap") / "model_configs"


def list_models() -> list[str]:
    """Names of the architectures shipped with openclap, sorted."""
    return sorted(p.name[: -len(".json")] for p in _config_dir().iterdir() if p.name.endswith(".json"))


def get_model_config(name: str) -> ClapConfig:
    """The ``ClapConfig`` of a named architecture; an unknown name lists the known ones."""
    path = _config_dir() / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())} (or pass a model directory)")
    config = ClapConfig.from_dict(json.loads(path.read_text()))
    if config.name != name:
        raise ValueError(f"model_configs/{name}.json declares name {config.name!r}; the file name and name must agree")
    return config
