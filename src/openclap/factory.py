"""Build models by name or from a directory, load weights strictly, save model directories."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from openclap.config import ClapConfig
from openclap.errors import (
    CheckpointError,  # noqa: F401 - re-exported: openclap.factory.CheckpointError is public
    check_state_dict,
)
from openclap.model import ClapModel
from openclap.registry import bundled_model_dir, get_model_config

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
TOKENIZER_DIR = "tokenizer"
# Seed for the random initialisation of models loaded without weights (e.g. the `tiny` preset), so
# that `load("tiny")` is the same model in every process.
RANDOM_INIT_SEED = 0
RANDOM_WEIGHTS_WARNING = (
    "model %r has seeded RANDOM weights (no checkpoint): its embeddings and scores are meaningless; "
    "use a trained model (openclap-mini, a model directory, or a preset with --checkpoint)"
)


def is_model_dir(path: str | os.PathLike) -> bool:
    """True when ``path`` is a directory holding an openclap ``config.json``."""
    return (Path(path) / CONFIG_NAME).is_file()


def resolve_source(name_or_dir: str | os.PathLike | ClapConfig) -> str | os.PathLike | ClapConfig:
    """A bundled trained model's name becomes its directory; anything else is returned as given."""
    if isinstance(name_or_dir, ClapConfig) or is_model_dir(name_or_dir):
        return name_or_dir
    bundled = bundled_model_dir(str(name_or_dir))
    return bundled if bundled is not None else name_or_dir


def resolve_config(name_or_dir: str | os.PathLike | ClapConfig) -> ClapConfig:
    """A config from a preset name, a model directory or a config object."""
    if isinstance(name_or_dir, ClapConfig):
        return name_or_dir
    if is_model_dir(name_or_dir):
        return ClapConfig.from_dict(json.loads((Path(name_or_dir) / CONFIG_NAME).read_text()))
    path = Path(name_or_dir)
    if path.exists():
        if (path / "caption_config.json").is_file():
            raise FileNotFoundError(
                f"{path} is a caption model directory (caption_config.json, no {CONFIG_NAME}): load it with "
                f"openclap.load_captioner({str(path)!r}) or `openclap caption FILES --model {path}`"
            )
        raise FileNotFoundError(f"{path} exists but has no {CONFIG_NAME}; a model directory needs one")
    if looks_like_path(str(name_or_dir)):
        raise FileNotFoundError(
            f"no such model directory: {name_or_dir} (for a preset, drop the path separators; "
            "`openclap models` lists the presets)"
        )
    return get_model_config(str(name_or_dir))


def looks_like_path(name: str) -> bool:
    """True for a string that names a file system path rather than a preset (a separator, ~ or a dot start)."""
    return "/" in name or os.sep in name or name.startswith((".", "~"))


def has_random_weights(
    name_or_dir: str | os.PathLike | ClapConfig, checkpoint: object, pretrained: bool
) -> bool:
    """Whether ``load_model(name_or_dir, checkpoint, download=pretrained)`` gives seeded random weights."""
    from openclap.pretrained import get_bundle

    name_or_dir = resolve_source(name_or_dir)
    if checkpoint is not None or (not isinstance(name_or_dir, ClapConfig) and is_model_dir(name_or_dir)):
        return False
    name = name_or_dir.name if isinstance(name_or_dir, ClapConfig) else str(name_or_dir)
    return not pretrained or get_bundle(name) is None


def create_model(config: ClapConfig, seed: int = RANDOM_INIT_SEED) -> ClapModel:
    """A randomly initialised model, the same for the same seed; left in eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ClapModel(config)
    return model.eval()


def load_weights(model: ClapModel, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state_dict`` strictly, with errors naming every missing, unexpected or mis-shaped key."""
    check_state_dict(
        model.state_dict(),
        state_dict,
        f"{source} does not fit model {model.config.name!r}",
        "The checkpoint was probably made for another preset: pass the matching model name.",
    )
    model.load_state_dict(state_dict, strict=True)


def load_checkpoint(model: ClapModel, checkpoint: str | os.PathLike, format: str | None = None) -> None:
    """Load a checkpoint file into ``model``: our safetensors, or a peer's format via a converter."""
    path = Path(checkpoint)
    if not path.is_file():
        from openclap.pretrained import missing_file_message

        raise FileNotFoundError(missing_file_message(str(path), model.config.name, format))
    if path.suffix == ".safetensors" and format in (None, "openclap"):
        load_weights(model, load_file(str(path)), str(path))
        return
    from openclap.convert import convert_checkpoint  # converters are only needed for peers' files

    state_dict, report = convert_checkpoint(path, model.config, format=format)
    logger.info("%s", report.summary())
    load_weights(model, state_dict, str(path))


def save_model_dir(model: ClapModel, directory: str | os.PathLike) -> Path:
    """Write ``config.json`` + ``model.safetensors`` (tokenizer files are the pipeline's job)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG_NAME).write_text(json.dumps(model.config.to_dict(), indent=2) + "\n")
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = out / (WEIGHTS_NAME + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": "pt", "openclap_model": model.config.name})
    os.replace(tmp, out / WEIGHTS_NAME)
    return out


def load_model(
    name_or_dir: str | os.PathLike | ClapConfig,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    download: bool = True,
) -> ClapModel:
    """A model in eval mode: from a model directory, or a preset with an optional checkpoint.

    A preset without ``checkpoint`` gets its published weights when it has any (hub download,
    offline cache first, when ``download``), otherwise seeded random weights.
    """
    name_or_dir = resolve_source(name_or_dir)
    config = resolve_config(name_or_dir)
    is_dir = not isinstance(name_or_dir, ClapConfig) and is_model_dir(name_or_dir)
    fmt = None
    if checkpoint is None and not is_dir and download:
        from openclap.pretrained import get_bundle

        bundle = get_bundle(config.name)
        if bundle is not None:  # fetched before the model is built: a missing file fails fast
            from openclap.hub import download_checkpoint

            checkpoint, fmt = download_checkpoint(bundle), bundle.format
    if checkpoint is not None and not Path(checkpoint).is_file():  # before building: fail fast
        from openclap.pretrained import missing_file_message

        raise FileNotFoundError(missing_file_message(str(checkpoint), config.name))
    model = create_model(config)
    if is_dir and checkpoint is None:
        weights = Path(name_or_dir) / WEIGHTS_NAME
        if not weights.is_file():
            raise FileNotFoundError(f"model directory {name_or_dir} has no {WEIGHTS_NAME}")
        load_weights(model, load_file(str(weights)), str(weights))
    elif checkpoint is not None:
        load_checkpoint(model, checkpoint, format=fmt)
    else:
        logger.warning(RANDOM_WEIGHTS_WARNING, config.name)
    return model.to(device).eval()
