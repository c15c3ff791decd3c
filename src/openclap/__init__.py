"""openclap: Contrastive Language-Audio Pretraining — load, embed, classify, search, train, evaluate.

    import openclap
    model = openclap.load("msclap-2023", checkpoint="CLAP_weights_2023.pth")
    a = model.embed_audio(["dog.wav"]); t = model.embed_text(["a dog barking"])
    model.similarity(a, t)

Attributes are imported on first use so that `import openclap` (and `openclap --help`) stay fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "load": "openclap.pipeline",
    "ClapPipeline": "openclap.pipeline",
    "AudioEmbedding": "openclap.pipeline",
    "Classification": "openclap.pipeline",
    "list_models": "openclap.registry",
    "get_model_config": "openclap.registry",
    "create_model": "openclap.factory",
    "load_model": "openclap.factory",
    "ClapModel": "openclap.model",
    "ClapOutput": "openclap.model",
    "ClapConfig": "openclap.config",
    "AudioConfig": "openclap.config",
    "TextConfig": "openclap.config",
    "AudioLoadError": "openclap.audio.io",
    "load_audio": "openclap.audio.io",
    "TextInputError": "openclap.text.tokenizer",
    "CheckpointError": "openclap.errors",
    "load_captioner": "openclap.caption",
}

__all__ = [
    "AudioConfig",
    "AudioEmbedding",
    "AudioLoadError",
    "CheckpointError",
    "ClapConfig",
    "ClapModel",
    "ClapOutput",
    "ClapPipeline",
    "Classification",
    "TextConfig",
    "TextInputError",
    "__version__",
    "create_model",
    "get_model_config",
    "list_models",
    "load",
    "load_audio",
    "load_captioner",
    "load_model",
]

if TYPE_CHECKING:  # pragma: no cover
    from openclap.audio.io import AudioLoadError, load_audio
    from openclap.caption import load_captioner
    from openclap.config import AudioConfig, ClapConfig, TextConfig
    from openclap.errors import CheckpointError
    from openclap.factory import create_model, load_model
    from openclap.model import ClapModel, ClapOutput
    from openclap.pipeline import AudioEmbedding, ClapPipeline, Classification, load
    from openclap.registry import get_model_config, list_models
    from openclap.text.tokenizer import TextInputError


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'openclap' has no attribute {name!r}")
