"""Published weights: where each comes from, its format, and what it was trained for.

A ``PretrainedBundle`` pairs a named architecture with a checkpoint file on the Hugging Face hub.
Downloading goes through ``huggingface_hub`` (its cache, ``HF_HUB_OFFLINE`` honoured); nothing is
fetched at import time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath


@dataclass(frozen=True)
class PretrainedBundle:
    """One published checkpoint for a named architecture."""

    model: str  # name in the registry
    repo_id: str  # Hugging Face repository
    filename: str  # file inside it
    format: str  # converter that reads it: "msclap", "laion", "hf"
    sample_rate: int
    duration: float
    licence: str
    reported: str  # what the paper reports, for the README and eval reports


PRETRAINED: dict[str, PretrainedBundle] = {
    # Source: Hugging Face repo microsoft/msclap (MISSION.md lists the file names and results).
    "msclap-2023": PretrainedBundle(
        model="msclap-2023",
        repo_id="microsoft/msclap",
        filename="CLAP_weights_2023.pth",
        format="msclap",
        sample_rate=44100,
        duration=7.0,
        licence="MIT (see the microsoft/msclap model card)",
        reported="ESC-50 93.9 %, UrbanSound8K 82.3 %, AudioCaps T2A R@1 35.6",
    ),
    "msclap-2022": PretrainedBundle(
        model="msclap-2022",
        repo_id="microsoft/msclap",
        filename="CLAP_weights_2022.pth",
        format="msclap",
        sample_rate=44100,
        duration=5.0,
        licence="MIT (see the microsoft/msclap model card)",
        reported="ESC-50 82.6 % (2022 paper)",
    ),
    # Source: LAION-AI/CLAP README and laion_clap/hook.py (load_ckpt's download names); files on the
    # Hugging Face repo lukewys/laion_clap. Licence: Apache-2.0 (LAION-AI/CLAP).
    "laion-htsat-tiny-roberta": PretrainedBundle(
        model="laion-htsat-tiny-roberta",
        repo_id="lukewys/laion_clap",
        filename="630k-audioset-best.pt",
        format="laion",
        sample_rate=48000,
        duration=10.0,
        licence="Apache-2.0 (LAION-AI/CLAP)",
        reported="see the LAION-CLAP paper (Wu et al., ICASSP 2023), HTSAT-tiny + RoBERTa, LAION-Audio-630K + AudioSet",
    ),
    "laion-htsat-tiny-roberta-fusion": PretrainedBundle(
        model="laion-htsat-tiny-roberta-fusion",
        repo_id="lukewys/laion_clap",
        filename="630k-audioset-fusion-best.pt",
        format="laion",
        sample_rate=48000,
        duration=10.0,
        licence="Apache-2.0 (LAION-AI/CLAP)",
        reported="see the LAION-CLAP paper (Wu et al., ICASSP 2023), fusion model; openclap windows clips > 10 s",
    ),
    "laion-htsat-base-roberta": PretrainedBundle(
        model="laion-htsat-base-roberta",
        repo_id="lukewys/laion_clap",
        filename="music_speech_audioset_epoch_15_esc_89.98.pt",
        format="laion",
        sample_rate=48000,
        duration=10.0,
        licence="Apache-2.0 (LAION-AI/CLAP)",
        reported="ESC-50 89.98 % zero-shot (from the file name; LAION-CLAP README: music + speech + AudioSet)",
    ),
}


# Captioning presets with published weights (openclap.caption.load_captioner).
CAPTION_PRETRAINED: dict[str, PretrainedBundle] = {
    # Source: Hugging Face repo microsoft/msclap (MISSION.md: clapcap_weights_2023.pth, captioning).
    "clapcap-2023": PretrainedBundle(
        model="clapcap-2023",
        repo_id="microsoft/msclap",
        filename="clapcap_weights_2023.pth",
        format="clapcap",
        sample_rate=44100,
        duration=7.0,
        licence="MIT (see the microsoft/msclap model card)",
        reported="AudioCaps / Clotho captioning (msclap 2023 paper)",
    ),
}


def get_bundle(name: str) -> PretrainedBundle | None:
    """The published checkpoint for ``name``, or None when the architecture has none."""
    return PRETRAINED.get(name)


def get_caption_bundle(name: str) -> PretrainedBundle | None:
    """The published checkpoint for the caption preset ``name``, or None when it has none."""
    return CAPTION_PRETRAINED.get(name)


def download_message(bundle: PretrainedBundle, problem: str, option: str = "checkpoint") -> str:
    """The one message for a missing published file: what is wrong, where to get it, how to pass it."""
    url = f"https://huggingface.co/{bundle.repo_id}/resolve/main/{bundle.filename}"
    return (
        f"{problem}. Model {bundle.model!r} needs {bundle.filename} from the Hugging Face repo "
        f"{bundle.repo_id} ({url}): download it on a machine with network access and pass it with "
        f"{option}=PATH (Python) or --{option} PATH (CLI), or put it in the hub cache"
    )


def missing_file_message(path: str, model: str | None = None, format: str | None = None) -> str:
    """A weights file that does not exist: the published file it may stand for and where to download it."""
    problem = f"checkpoint {path} not found"
    bundle = (get_bundle(model) or get_caption_bundle(model)) if model else None
    if bundle is None:  # match the file name, e.g. a mistyped path to CLAP_weights_2023.pth
        bundle = next((b for b in _all_bundles() if b.filename == PurePath(path).name), None)
    if bundle is not None:
        return download_message(bundle, problem)
    candidates = [
        b for b in _all_bundles() if format in (None, b.format) or (format, b.format) == ("msclap", "clapcap")
    ]
    if not candidates:
        return f"{problem}: pass the path of an existing file or directory"
    files = "; ".join(f"{b.filename} ({b.model}) from https://huggingface.co/{b.repo_id}" for b in candidates)
    return (
        f"{problem}: pass the path of an existing weights file. Published files: {files} (download on a "
        "machine with network access)"
    )


def _all_bundles() -> list[PretrainedBundle]:
    return [*PRETRAINED.values(), *CAPTION_PRETRAINED.values()]
