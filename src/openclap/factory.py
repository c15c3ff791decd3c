"""Build models by name or from a directory, load weights strictly, save model directories.

openclap has two model families, CLAP (``ClapModel``, ``config.json``) and captioning (``CaptionModel``,
``caption_config.json``). A ``ModelFamily`` says what differs between them; the functions taking a family
(``family_*``) are the one implementation both use. ``openclap.caption.factory`` is a thin use of them.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from openclap.config import ClapConfig
from openclap.errors import (
    CheckpointError,  # also public as openclap.factory.CheckpointError
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
SAFETENSORS_METADATA = {"format": "pt"}
RANDOM_WEIGHTS_WARNING = (
    "model %r has seeded RANDOM weights (no checkpoint): its embeddings and scores are meaningless; "
    "use a trained model (openclap-mini, a model directory, or a preset with --checkpoint)"
)


@dataclass(frozen=True)
class ModelFamily:
    """What differs between the CLAP and the captioning models; loading and saving code is shared."""

    label: str  # "model" / "caption model", in messages
    config_name: str  # the config file of a model directory
    config_type: type  # ClapConfig / CaptionConfig (has from_dict / to_dict)
    model_type: type  # ClapModel / CaptionModel (built from a config)
    get_config: Callable[[str], Any]  # preset name -> config; unknown names raise, listing the known ones
    get_bundle: Callable[[str], Any]  # preset name -> its published checkpoint (PretrainedBundle) or None
    convert: Callable[[Path, Any, str | None], tuple[dict, Any]]  # a peer's file -> (state dict, report)
    other_dir_hint: Callable[[Path], str]  # message for a directory of the other family ("" if not one)
    fit_fix: str  # what to do when a checkpoint does not fit
    random_warning: str  # logged (with the config name) when a model gets seeded random weights
    bundled_dir: Callable[[str], Path | None] = lambda name: None  # trained models shipped in the package
    tied: tuple[str, str] | None = None  # (key, source): an output layer tied to an input one, not saved


def family_is_dir(family: ModelFamily, path: str | os.PathLike) -> bool:
    """True when ``path`` is a directory holding the family's config file."""
    return (Path(path) / family.config_name).is_file()


def family_resolve_source(family: ModelFamily, name_or_dir: Any) -> Any:
    """A bundled trained model's name becomes its directory; anything else is returned as given."""
    if isinstance(name_or_dir, family.config_type) or family_is_dir(family, name_or_dir):
        return name_or_dir
    bundled = family.bundled_dir(str(name_or_dir))
    return bundled if bundled is not None else name_or_dir


def family_resolve_config(family: ModelFamily, name_or_dir: Any) -> Any:
    """A config from a preset name, a model directory or a config object."""
    if isinstance(name_or_dir, family.config_type):
        return name_or_dir
    path = Path(name_or_dir)
    if family_is_dir(family, path):
        return family.config_type.from_dict(json.loads((path / family.config_name).read_text()))
    if path.exists():
        raise FileNotFoundError(
            f"{path} exists but has no {family.config_name}; a {family.label} directory needs one"
            + family.other_dir_hint(path)
        )
    if looks_like_path(str(name_or_dir)):
        raise FileNotFoundError(
            f"no such {family.label} directory: {name_or_dir} (for a preset, drop the path separators; "
            "`openclap models` lists the presets)"
        )
    return family.get_config(str(name_or_dir))


def family_create(family: ModelFamily, config: Any, seed: int = RANDOM_INIT_SEED) -> torch.nn.Module:
    """A randomly initialised model, the same for the same seed; left in eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = family.model_type(config)
    return model.eval()


def _is_tied(family: ModelFamily, own: dict[str, torch.Tensor]) -> bool:
    if family.tied is None:
        return False
    key, source = family.tied
    return key in own and own[key].data_ptr() == own[source].data_ptr()


def family_state_dict(family: ModelFamily, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The tensors to save: the state dict without a tied output layer, detached, contiguous, on CPU."""
    state_dict = model.state_dict()
    if _is_tied(family, state_dict):
        state_dict.pop(family.tied[0])
    return {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}


def family_load_weights(
    family: ModelFamily, model: torch.nn.Module, state_dict: dict[str, torch.Tensor], source: str
) -> None:
    """Load strictly (a tied output layer may be absent); errors name every missing, unexpected or
    mis-shaped key."""
    own = model.state_dict()
    given = dict(state_dict)
    if _is_tied(family, own):
        key, tied_to = family.tied
        if key not in given and tied_to in given:
            given[key] = given[tied_to]
        elif key in given and tied_to in given and not torch.equal(given[key], given[tied_to]):
            raise CheckpointError(f"{source}: {key} differs from {tied_to}, but the model ties them")
    check_state_dict(
        own, given, f"{source} does not fit {family.label} {model.config.name!r}", family.fit_fix
    )
    model.load_state_dict(given, strict=True)


def family_load_checkpoint(
    family: ModelFamily, model: torch.nn.Module, checkpoint: str | os.PathLike, format: str | None = None
) -> None:
    """Load a checkpoint file into ``model``: our safetensors, or a peer's format via a converter."""
    path = Path(checkpoint)
    if not path.is_file():
        from openclap.pretrained import missing_file_message

        raise FileNotFoundError(missing_file_message(str(path), model.config.name, format))
    if path.suffix == ".safetensors" and format in (None, "openclap"):
        family_load_weights(family, model, load_file(str(path)), str(path))
        return
    state_dict, report = family.convert(path, model.config, format)
    logger.info("%s", report.summary())
    family_load_weights(family, model, state_dict, str(path))


def family_save_dir(family: ModelFamily, model: torch.nn.Module, directory: str | os.PathLike) -> Path:
    """Write the config file and ``model.safetensors``, each atomically (tokenizer files are the
    pipeline's job)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tmp_config = out / (family.config_name + ".tmp")
    tmp_config.write_text(json.dumps(model.config.to_dict(), indent=2) + "\n")
    os.replace(tmp_config, out / family.config_name)
    write_safetensors(family_state_dict(family, model), out / WEIGHTS_NAME)
    return out


def write_safetensors(tensors: dict[str, torch.Tensor], path: str | os.PathLike) -> Path:
    """Write ``tensors`` to ``path`` atomically (a temporary file, then ``os.replace``), the same bytes for
    the same tensors, readable as any new file is (``0o666`` less the umask)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    # One metadata entry: safetensors writes its metadata map in hash order, so with two entries the same
    # weights could give different file bytes from save to save (the model's name is in the config file).
    # safetensors writes its file owner-only (0600): a model saved by one account and served by another (a
    # service user, a shared folder) could not be read. A file created here first gets the usual mode (the
    # umask read without os.umask, which would change it for every thread meanwhile).
    tmp.unlink(missing_ok=True)
    tmp.touch()
    mode = stat.S_IMODE(tmp.stat().st_mode)
    save_file(tensors, str(tmp), metadata=SAFETENSORS_METADATA)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return path


def family_has_random_weights(
    family: ModelFamily, name_or_dir: Any, checkpoint: object, pretrained: bool
) -> bool:
    """Whether ``family_load(family, name_or_dir, checkpoint, download=pretrained)`` gives random weights."""
    name_or_dir = family_resolve_source(family, name_or_dir)
    if checkpoint is not None:
        return False
    if not isinstance(name_or_dir, family.config_type) and family_is_dir(family, name_or_dir):
        return False
    name = name_or_dir.name if isinstance(name_or_dir, family.config_type) else str(name_or_dir)
    return not pretrained or family.get_bundle(name) is None


def family_load(
    family: ModelFamily,
    name_or_dir: Any,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    download: bool = True,
) -> torch.nn.Module:
    """A model in eval mode: from a model directory, or a preset with an optional checkpoint.

    A preset without ``checkpoint`` gets its published weights when it has any (hub cache first, then a
    download, when ``download``), failing with the file's name when neither works; otherwise (no
    published weights, or ``download=False``) seeded random weights, with a warning.
    """
    name_or_dir = family_resolve_source(family, name_or_dir)
    config = family_resolve_config(family, name_or_dir)
    is_dir = not isinstance(name_or_dir, family.config_type) and family_is_dir(family, name_or_dir)
    fmt = None
    if checkpoint is None and not is_dir and download:
        bundle = family.get_bundle(config.name)
        if bundle is not None:  # fetched before the model is built: a missing file fails fast
            from openclap.hub import download_checkpoint

            checkpoint, fmt = download_checkpoint(bundle), bundle.format
    if checkpoint is not None and not Path(checkpoint).is_file():  # before building: fail fast
        from openclap.pretrained import missing_file_message

        raise FileNotFoundError(missing_file_message(str(checkpoint), config.name))
    model = family_create(family, config)
    if is_dir and checkpoint is None:
        weights = Path(name_or_dir) / WEIGHTS_NAME
        if not weights.is_file():
            raise FileNotFoundError(f"{family.label} directory {name_or_dir} has no {WEIGHTS_NAME}")
        family_load_weights(family, model, load_file(str(weights)), str(weights))
    elif checkpoint is not None:
        family_load_checkpoint(family, model, checkpoint, format=fmt)
    else:
        logger.warning(family.random_warning, config.name)
    return model.to(device).eval()


def looks_like_path(name: str) -> bool:
    """True for a string that names a file system path rather than a preset (a separator, ~ or a dot start)."""
    return "/" in name or os.sep in name or name.startswith((".", "~"))


# ---- the CLAP family


def _convert_clap(path: Path, config: ClapConfig, format: str | None) -> tuple[dict, Any]:
    from openclap.convert import convert_checkpoint  # converters are only needed for peers' files

    return convert_checkpoint(path, config, format=format)


def _caption_dir_hint(path: Path) -> str:
    if not (path / "caption_config.json").is_file():
        return ""
    return (
        f" (it is a caption model directory: load it with openclap.load_captioner({str(path)!r}) or "
        f"`openclap caption FILES --model {path}`)"
    )


def _clap_bundle(name: str) -> Any:
    from openclap.pretrained import get_bundle

    return get_bundle(name)


CLAP = ModelFamily(
    label="model",
    config_name=CONFIG_NAME,
    config_type=ClapConfig,
    model_type=ClapModel,
    get_config=get_model_config,
    get_bundle=_clap_bundle,
    convert=_convert_clap,
    other_dir_hint=_caption_dir_hint,
    fit_fix="The checkpoint was probably made for another preset: pass the matching model name.",
    random_warning=RANDOM_WEIGHTS_WARNING,
    bundled_dir=bundled_model_dir,
)


def is_model_dir(path: str | os.PathLike) -> bool:
    """True when ``path`` is a directory holding an openclap ``config.json``."""
    return family_is_dir(CLAP, path)


def resolve_source(name_or_dir: str | os.PathLike | ClapConfig) -> str | os.PathLike | ClapConfig:
    """A bundled trained model's name becomes its directory; anything else is returned as given."""
    return family_resolve_source(CLAP, name_or_dir)


def resolve_config(name_or_dir: str | os.PathLike | ClapConfig) -> ClapConfig:
    """A config from a preset name, a model directory or a config object."""
    return family_resolve_config(CLAP, name_or_dir)


def has_random_weights(
    name_or_dir: str | os.PathLike | ClapConfig, checkpoint: object, pretrained: bool
) -> bool:
    """Whether ``load_model(name_or_dir, checkpoint, download=pretrained)`` gives seeded random weights."""
    return family_has_random_weights(CLAP, name_or_dir, checkpoint, pretrained)


def create_model(config: ClapConfig, seed: int = RANDOM_INIT_SEED) -> ClapModel:
    """A randomly initialised model, the same for the same seed; left in eval mode."""
    return family_create(CLAP, config, seed)


def load_weights(model: ClapModel, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state_dict`` strictly, with errors naming every missing, unexpected or mis-shaped key."""
    family_load_weights(CLAP, model, state_dict, source)


def load_checkpoint(model: ClapModel, checkpoint: str | os.PathLike, format: str | None = None) -> None:
    """Load a checkpoint file into ``model``: our safetensors, or a peer's format via a converter."""
    family_load_checkpoint(CLAP, model, checkpoint, format)


def save_model_dir(model: ClapModel, directory: str | os.PathLike) -> Path:
    """Write ``config.json`` + ``model.safetensors`` (tokenizer files are the pipeline's job)."""
    return family_save_dir(CLAP, model, directory)


def load_model(
    name_or_dir: str | os.PathLike | ClapConfig,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    download: bool = True,
) -> ClapModel:
    """A CLAP model in eval mode: from a model directory, or a preset with an optional checkpoint
    (``family_load`` says how)."""
    return family_load(CLAP, name_or_dir, checkpoint, device, download)
