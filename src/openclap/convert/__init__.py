"""Converters from the peers' checkpoints to openclap state dicts: pure functions with a full report.

Each converter maps a source state dict onto an openclap preset: ``state_dict -> (state_dict,
ConversionReport)``. Every source tensor is either mapped or dropped with a reason; derived buffers are
checked against openclap's before they are dropped; a tensor no rule covers, a missing tensor or a shape
mismatch raises ``ConversionError`` naming the key, both shapes and the preset the checkpoint looks like.
Pickled files are read only with ``torch.load(weights_only=True)`` (``UnsafeCheckpointError`` otherwise).

    convert_checkpoint(path, config, format=None)   file or transformers directory -> (state dict, report)
    convert_msclap / convert_laion / convert_hf      the pure converters
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from torch import Tensor

from openclap.config import ClapConfig
from openclap.convert.common import ConversionError
from openclap.convert.hf import config_from_hf, convert_hf, is_hf, read_hf_dir
from openclap.convert.io import UnsafeCheckpointError, load_state_dict
from openclap.convert.laion import convert_laion, is_laion, likely_laion_preset
from openclap.convert.msclap import convert_msclap, is_msclap, likely_msclap_preset
from openclap.convert.report import ConversionReport

__all__ = [
    "FORMATS",
    "ConversionError",
    "ConversionReport",
    "UnsafeCheckpointError",
    "config_from_hf",
    "convert_checkpoint",
    "convert_hf",
    "convert_laion",
    "convert_msclap",
    "convert_openclap",
    "detect_format",
    "likely_preset",
    "load_state_dict",
    "read_hf_dir",
]


def convert_openclap(
    state_dict: dict[str, Tensor], config: ClapConfig, source: str = "openclap state dict"
) -> tuple[dict[str, Tensor], ConversionReport]:
    """An openclap state dict (e.g. a ``.pt`` file of ``model.state_dict()``): identity, still checked."""
    from openclap.convert.common import finish

    report = ConversionReport(source=source, format="openclap", preset=config.name)
    for key in state_dict:
        report.map(key, key)
    return finish(dict(state_dict), report, config, [], None), report


Converter = Callable[..., tuple[dict[str, Tensor], ConversionReport]]
FORMATS: dict[str, Converter] = {
    "msclap": convert_msclap,
    "laion": convert_laion,
    "hf": convert_hf,
    "openclap": convert_openclap,
}


def detect_format(state_dict: dict[str, Tensor]) -> str:
    """Which family a state dict comes from, by its key names."""
    if is_msclap(state_dict):
        return "msclap"
    if is_laion(state_dict):
        return "laion"
    if is_hf(state_dict):
        return "hf"
    if any(k.startswith(("audio_encoder.", "text_encoder.model.")) for k in state_dict):
        return "openclap"
    raise ConversionError(
        f"unrecognised checkpoint layout (first keys: {sorted(state_dict)[:5]}); openclap converts msclap "
        f"(caption_encoder.*), LAION-CLAP (audio_branch.*) and transformers ClapModel (audio_model.*) weights"
    )


def likely_preset(state_dict: dict[str, Tensor]) -> str | None:
    """The preset name a peer's state dict most likely belongs to (None if unknown)."""
    return likely_msclap_preset(state_dict) or likely_laion_preset(state_dict)


def convert_checkpoint(
    path: str | os.PathLike, config: ClapConfig, format: str | None = None
) -> tuple[dict[str, Tensor], ConversionReport]:
    """Read a peer's checkpoint file (or transformers directory) safely and convert it for ``config``."""
    p = Path(path)
    state_dict = load_state_dict(p)
    fmt = format or detect_format(state_dict)
    if fmt not in FORMATS:
        raise ValueError(f"unknown checkpoint format {fmt!r}; known: {sorted(FORMATS)}")
    return FORMATS[fmt](state_dict, config, source=str(p))
