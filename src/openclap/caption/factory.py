"""Build captioning models by preset name or from a directory; load weights strictly; save directories.

A thin use of ``openclap.factory``'s shared family code (``CAPTION`` says what differs). A caption model
directory holds ``caption_config.json`` (a ``CaptionConfig``), ``model.safetensors`` (without
``decoder.lm_head.weight``, which is tied to the token embedding) and ``tokenizer/``. The config file name
differs from a CLAP model directory's ``config.json`` on purpose: ``openclap.load`` refuses a caption
directory and ``load_captioner`` a CLAP one, each with a message saying which loader fits.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from openclap.caption.config import CaptionConfig, get_caption_config
from openclap.caption.model import TIED_KEY, TIED_SOURCE, CaptionModel
from openclap.factory import (
    RANDOM_INIT_SEED,
    TOKENIZER_DIR,  # noqa: F401 - re-exported: a caption model directory's tokenizer folder
    WEIGHTS_NAME,  # noqa: F401 - re-exported
    ModelFamily,
    family_create,
    family_has_random_weights,
    family_is_dir,
    family_load,
    family_load_checkpoint,
    family_load_weights,
    family_resolve_config,
    family_save_dir,
    family_state_dict,
)

CAPTION_CONFIG_NAME = "caption_config.json"


def _convert_clapcap(path: Path, config: CaptionConfig, format: str | None) -> tuple[dict, Any]:
    from openclap.convert.clapcap import convert_clapcap_file

    return convert_clapcap_file(path, config)


def _clap_dir_hint(path: Path) -> str:
    return " (it is a CLAP model directory: use openclap.load)" if (path / "config.json").is_file() else ""


def _caption_bundle(name: str) -> Any:
    from openclap.pretrained import get_caption_bundle

    return get_caption_bundle(name)


CAPTION = ModelFamily(
    label="caption model",
    config_name=CAPTION_CONFIG_NAME,
    config_type=CaptionConfig,
    model_type=CaptionModel,
    get_config=get_caption_config,
    get_bundle=_caption_bundle,
    convert=_convert_clapcap,
    other_dir_hint=_clap_dir_hint,
    fit_fix="Pass the caption preset the checkpoint was made for.",
    random_warning=(
        "caption model %r has seeded RANDOM weights (no checkpoint): its captions are noise; pass a "
        "checkpoint or a trained caption model directory"
    ),
    tied=(TIED_KEY, TIED_SOURCE),
)


def is_caption_dir(path: str | os.PathLike) -> bool:
    """True when ``path`` is a directory holding a ``caption_config.json``."""
    return family_is_dir(CAPTION, path)


def resolve_caption_config(name_or_dir: str | os.PathLike | CaptionConfig) -> CaptionConfig:
    """A caption config from a preset name, a caption model directory or a config object."""
    return family_resolve_config(CAPTION, name_or_dir)


def create_caption_model(config: CaptionConfig, seed: int = RANDOM_INIT_SEED) -> CaptionModel:
    """A randomly initialised caption model, the same for the same seed; left in eval mode."""
    return family_create(CAPTION, config, seed)


def caption_state_dict(model: CaptionModel) -> dict[str, torch.Tensor]:
    """The tensors to save: the state dict without the tied output layer, detached, contiguous, on CPU."""
    return family_state_dict(CAPTION, model)


def load_caption_weights(model: CaptionModel, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Load strictly (the tied output layer may be absent); errors name every missing, unexpected or
    mis-shaped key."""
    family_load_weights(CAPTION, model, state_dict, source)


def save_caption_model(model: CaptionModel, directory: str | os.PathLike) -> Path:
    """Write ``caption_config.json`` + ``model.safetensors`` atomically (the tokenizer is the pipeline's)."""
    return family_save_dir(CAPTION, model, directory)


def load_caption_checkpoint(model: CaptionModel, checkpoint: str | os.PathLike) -> None:
    """Load a ``.safetensors`` caption state dict or msclap's ``clapcap_weights_2023.pth`` into ``model``."""
    family_load_checkpoint(CAPTION, model, checkpoint)


def load_caption_model(
    name_or_dir: str | os.PathLike | CaptionConfig,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    pretrained: bool = True,
) -> CaptionModel:
    """A caption model in eval mode: from a directory, or a preset with a checkpoint.

    A preset with published weights (clapcap-2023) and no ``checkpoint`` reads them from the hub cache
    (then a download) and fails naming the file when neither works, unless ``pretrained=False``, which
    asks for seeded random weights. A preset without published weights (clapcap-tiny) is random by name.
    """
    return family_load(CAPTION, name_or_dir, checkpoint, device, download=pretrained)


def caption_random_weights(
    name_or_dir: str | os.PathLike | CaptionConfig, checkpoint: object, pretrained: bool
) -> bool:
    """Whether ``load_caption_model(name_or_dir, checkpoint, pretrained=pretrained)`` gives random weights."""
    return family_has_random_weights(CAPTION, name_or_dir, checkpoint, pretrained)
