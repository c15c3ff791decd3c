"""Build captioning models by preset name or from a directory; load weights strictly; save directories.

A caption model directory holds ``caption_config.json`` (a ``CaptionConfig``), ``model.safetensors``
(without ``decoder.lm_head.weight``, which is tied to the token embedding) and ``tokenizer/``. The config
file name differs from a CLAP model directory's ``config.json`` on purpose: ``openclap.load`` refuses a
caption directory and ``load_captioner`` a CLAP one, each with a message saying which loader fits.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from openclap.caption.config import CaptionConfig, get_caption_config
from openclap.caption.model import TIED_KEY, TIED_SOURCE, CaptionModel
from openclap.errors import CheckpointError, check_state_dict

logger = logging.getLogger(__name__)

CAPTION_CONFIG_NAME = "caption_config.json"
WEIGHTS_NAME = "model.safetensors"
TOKENIZER_DIR = "tokenizer"
RANDOM_INIT_SEED = 0


def is_caption_dir(path: str | os.PathLike) -> bool:
    """True when ``path`` is a directory holding a ``caption_config.json``."""
    return (Path(path) / CAPTION_CONFIG_NAME).is_file()


def resolve_caption_config(name_or_dir: str | os.PathLike | CaptionConfig) -> CaptionConfig:
    """A caption config from a preset name, a caption model directory or a config object."""
    if isinstance(name_or_dir, CaptionConfig):
        return name_or_dir
    path = Path(name_or_dir)
    if is_caption_dir(path):
        return CaptionConfig.from_dict(json.loads((path / CAPTION_CONFIG_NAME).read_text()))
    if path.exists():
        hint = (
            " (it is a CLAP model directory: use openclap.load)" if (path / "config.json").is_file() else ""
        )
        raise FileNotFoundError(
            f"{path} has no {CAPTION_CONFIG_NAME}; a caption model directory needs one{hint}"
        )
    from openclap.factory import looks_like_path

    if looks_like_path(str(name_or_dir)):
        raise FileNotFoundError(f"no such caption model directory: {name_or_dir}")
    return get_caption_config(str(name_or_dir))


def create_caption_model(config: CaptionConfig, seed: int = RANDOM_INIT_SEED) -> CaptionModel:
    """A randomly initialised caption model, the same for the same seed; left in eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CaptionModel(config)
    return model.eval()


def caption_state_dict(model: CaptionModel) -> dict[str, torch.Tensor]:
    """The tensors to save: the state dict without the tied output layer, detached, contiguous, on CPU."""
    sd = model.state_dict()
    if TIED_KEY in sd and sd[TIED_KEY].data_ptr() == sd[TIED_SOURCE].data_ptr():
        sd.pop(TIED_KEY)
    return {k: v.detach().cpu().contiguous() for k, v in sd.items()}


def load_caption_weights(model: CaptionModel, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Load strictly (the tied output layer may be absent); errors name every missing, unexpected or
    mis-shaped key."""
    own = model.state_dict()
    tied = own[TIED_KEY].data_ptr() == own[TIED_SOURCE].data_ptr()
    given = dict(state_dict)
    if tied and TIED_KEY not in given and TIED_SOURCE in given:
        given[TIED_KEY] = given[TIED_SOURCE]
    if (
        tied
        and TIED_KEY in given
        and TIED_SOURCE in given
        and not torch.equal(given[TIED_KEY], given[TIED_SOURCE])
    ):
        raise CheckpointError(f"{source}: {TIED_KEY} differs from {TIED_SOURCE}, but the decoder ties them")
    check_state_dict(
        own,
        given,
        f"{source} does not fit caption model {model.config.name!r}",
        "Pass the caption preset the checkpoint was made for.",
    )
    model.load_state_dict(given, strict=True)


def save_caption_model(model: CaptionModel, directory: str | os.PathLike) -> Path:
    """Write ``caption_config.json`` + ``model.safetensors`` atomically (the tokenizer is the pipeline's)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tmp_cfg = out / (CAPTION_CONFIG_NAME + ".tmp")
    tmp_cfg.write_text(json.dumps(model.config.to_dict(), indent=2) + "\n")
    os.replace(tmp_cfg, out / CAPTION_CONFIG_NAME)
    tmp = out / (WEIGHTS_NAME + ".tmp")
    save_file(
        caption_state_dict(model),
        str(tmp),
        metadata={"format": "pt", "openclap_caption_model": model.config.name},
    )
    os.replace(tmp, out / WEIGHTS_NAME)
    return out


def load_caption_checkpoint(model: CaptionModel, checkpoint: str | os.PathLike) -> None:
    """Load a ``.safetensors`` caption state dict or msclap's ``clapcap_weights_2023.pth`` into ``model``."""
    path = Path(checkpoint)
    if not path.is_file():
        from openclap.pretrained import missing_file_message

        raise FileNotFoundError(missing_file_message(str(path), model.config.name))
    if path.suffix == ".safetensors":
        load_caption_weights(model, load_file(str(path)), str(path))
        return
    from openclap.convert.clapcap import convert_clapcap_file

    state_dict, report = convert_clapcap_file(path, model.config)
    logger.info("%s", report.summary())
    load_caption_weights(model, state_dict, str(path))


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
    from openclap.pretrained import get_caption_bundle

    config = resolve_caption_config(name_or_dir)
    is_dir = not isinstance(name_or_dir, CaptionConfig) and is_caption_dir(name_or_dir)
    bundle = get_caption_bundle(config.name)
    if checkpoint is None and not is_dir and pretrained and bundle is not None:
        from openclap.hub import download_checkpoint

        checkpoint = download_checkpoint(bundle)  # before building the model: a missing file fails fast
    if checkpoint is not None and not Path(checkpoint).is_file():
        from openclap.pretrained import missing_file_message

        raise FileNotFoundError(missing_file_message(str(checkpoint), config.name))
    model = create_caption_model(config)
    if checkpoint is not None:
        load_caption_checkpoint(model, checkpoint)
    elif is_dir:
        weights = Path(name_or_dir) / WEIGHTS_NAME
        if not weights.is_file():
            raise FileNotFoundError(f"caption model directory {name_or_dir} has no {WEIGHTS_NAME}")
        load_caption_weights(model, load_file(str(weights)), str(weights))
    else:
        logger.warning(
            "caption model %r has seeded RANDOM weights (no checkpoint): its captions are noise; pass a "
            "checkpoint or a trained caption model directory",
            config.name,
        )
    return model.to(device).eval()


def caption_random_weights(
    name_or_dir: str | os.PathLike | CaptionConfig, checkpoint: object, pretrained: bool
) -> bool:
    """Whether ``load_caption_model(name_or_dir, checkpoint, pretrained=pretrained)`` gives random weights."""
    from openclap.pretrained import get_caption_bundle

    if checkpoint is not None or (not isinstance(name_or_dir, CaptionConfig) and is_caption_dir(name_or_dir)):
        return False
    name = name_or_dir.name if isinstance(name_or_dir, CaptionConfig) else str(name_or_dir)
    return not pretrained or get_caption_bundle(name) is None
