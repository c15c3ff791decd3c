"""Dataset adapters: ``DATASETS[name]()`` reads that dataset's published layout; ``load_dataset`` wraps it."""

from __future__ import annotations

import os

from openclap.eval.datasets.base import (
    MULTI_LABEL,
    RETRIEVAL,
    SINGLE_LABEL,
    DatasetAdapter,
    DatasetLayoutError,
    EvalDataset,
    EvalItem,
    clean_class_name,
)
from openclap.eval.datasets.captions import AudioCaps, Clotho
from openclap.eval.datasets.classification import (
    ESC10,
    ESC50,
    FSD50K,
    RAVDESS,
    TUT2017,
    CremaD,
    GTZANGenres,
    GTZANMusicSpeech,
    NSynth,
    NSynthPitch,
    NSynthQualities,
    NSynthSource,
    NSynthVelocity,
    SpeechCommands,
    UrbanSound8K,
    VocalSound,
)
from openclap.eval.datasets.manifest import Manifest

# name -> adapter class. The names are the `--dataset` choices of `openclap eval`.
DATASETS: dict[str, type[DatasetAdapter]] = {
    cls.name: cls
    for cls in (
        ESC50,
        ESC10,
        UrbanSound8K,
        GTZANGenres,
        GTZANMusicSpeech,
        VocalSound,
        CremaD,
        RAVDESS,
        TUT2017,
        FSD50K,
        SpeechCommands,
        NSynth,
        NSynthSource,
        NSynthPitch,
        NSynthVelocity,
        NSynthQualities,
        AudioCaps,
        Clotho,
    )
}

__all__ = [
    "DATASETS",
    "MULTI_LABEL",
    "RETRIEVAL",
    "SINGLE_LABEL",
    "DatasetAdapter",
    "DatasetLayoutError",
    "EvalDataset",
    "EvalItem",
    "Manifest",
    "clean_class_name",
    "get_adapter",
    "load_dataset",
]


def get_adapter(name: str) -> DatasetAdapter:
    """The adapter registered under ``name``; an unknown name lists the known ones."""
    if name not in DATASETS:
        raise ValueError(
            f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))} "
            "(or use a manifest: --manifest FILE)"
        )
    return DATASETS[name]()


def load_dataset(name: str, root: str | os.PathLike, split: str | None = None) -> EvalDataset:
    """Read dataset ``name`` from ``root`` (its publisher's layout)."""
    return get_adapter(name).load(root, split)
