"""LAION-CLAP checkpoints (``630k-audioset-best.pt``, ``630k-fusion-best.pt``, music/speech variants).

Key layout (facts from LAION-AI/CLAP ``laion_clap/clap_module/model.py`` class ``CLAP`` and ``htsat.py``):

    audio_branch.*              HTSAT_Swin_Transformer (same module names as msclap's HTSAT, which came
                                from it), plus torchlibrosa's front end and, with fusion, the fusion branch
    text_branch.*               transformers RobertaModel (pooler included; LAION pools with pooler_output)
    text_projection.{0,2}.*     Linear -> ReLU -> Linear (openclap's LaionProjection linear1 / linear2)
    audio_projection.{0,2}.*    same
    logit_scale_a, logit_scale_t
    text_transform.*, audio_transform.*   MLPLayers used only by LAION's training loss

Training checkpoints hold ``{'state_dict': ..., 'epoch': ..., ...}`` with a ``module.`` prefix (DDP);
the loader strips both. ``logit_scale_a`` is the audio-text temperature LAION's forward uses for the
contrastive logits; ``logit_scale_t`` and the ``*_transform`` MLPs serve only its extra MLP-branch loss.

Fusion checkpoints (``enable_fusion=True``, ``fusion_type='aff_2d'``) add ``patch_embed.mel_conv2d.*``
and ``patch_embed.fusion_model.*`` (or ``mel_conv1d.*`` / ``fusion_model.*`` for the 1-D variants).
LAION's forward uses them only for clips longer than 10 s (``longer`` flag); a clip of at most 10 s goes
through the plain HTSAT on the first of its four mel views, computed with torchaudio's HTK-scale,
unnormalised filterbank. openclap windows long clips instead of fusing views, so these tensors are
dropped (listed in the report) and the fusion presets set the HTK front end.
"""

from __future__ import annotations

import re

from torch import Tensor

from openclap.config import ClapConfig
from openclap.convert.common import (
    TORCHLIBROSA_KEYS,
    TRANSFORMERS_BUFFER_REASON,
    TRANSFORMERS_BUFFERS,
    ConversionError,
    audio_size_name,
    check_mel_filterbank,
    finish,
    htsat_buffer,
    is_htsat_buffer,
)
from openclap.convert.report import ConversionReport

FUSION_KEYS = re.compile(r"(patch_embed\.)?(fusion_model|mel_conv2d|mel_conv1d)\..*")
FUSION_REASON = (
    "LAION feature-fusion branch: used by LAION only for clips longer than 10 s; openclap embeds long "
    "clips by windowing instead (fusion not implemented)"
)
_PROJ = re.compile(r"(text|audio)_projection\.([02])\.(weight|bias)")


def is_laion(state_dict: dict[str, Tensor]) -> bool:
    """True for LAION-CLAP state dicts."""
    return any(k.startswith(("audio_branch.", "text_branch.")) for k in state_dict)


def likely_laion_preset(state_dict: dict[str, Tensor]) -> str | None:
    """The LAION preset a state dict was made for, from the HTSAT width and the fusion tensors."""
    patch = state_dict.get("audio_branch.patch_embed.proj.weight")
    if patch is None or not any(k.startswith("text_branch.") for k in state_dict):
        return None
    size = audio_size_name(int(patch.shape[0]))
    if size is None:
        return None
    fusion = any(
        FUSION_KEYS.fullmatch(k[len("audio_branch.") :]) for k in state_dict if k.startswith("audio_branch.")
    )
    return f"laion-htsat-{size}-roberta" + ("-fusion" if fusion else "")


def convert_laion(
    state_dict: dict[str, Tensor], config: ClapConfig, source: str = "LAION-CLAP checkpoint"
) -> tuple[dict[str, Tensor], ConversionReport]:
    """LAION-CLAP state dict -> (openclap state dict, report); strict: every tensor mapped or explained."""
    report = ConversionReport(source=source, format="laion", preset=config.name)
    if config.audio.encoder != "htsat" or config.text.encoder != "roberta" or config.projection != "laion":
        raise ConversionError(
            f"preset {config.name!r} ({config.audio.encoder} + {config.text.encoder}, {config.projection} "
            f"projection) cannot hold a LAION-CLAP HTSAT + RoBERTa checkpoint; use one of the laion-* presets"
            + (f", e.g. {likely_laion_preset(state_dict)!r}" if likely_laion_preset(state_dict) else "")
        )
    out: dict[str, Tensor] = {}
    unknown: list[str] = []
    for key, value in state_dict.items():
        dst: str | None = None
        if key.startswith("audio_branch."):
            rest = key[len("audio_branch.") :]
            if rest in TORCHLIBROSA_KEYS:
                if rest == "logmel_extractor.melW":
                    check_mel_filterbank(value, config, report, key)
                report.drop(key, TORCHLIBROSA_KEYS[rest])
            elif is_htsat_buffer(rest):
                problem = htsat_buffer(rest, value, config)
                if problem is not None:
                    report.buffer_problems.append(problem)
                else:
                    report.checked.append(key)
                report.drop(
                    key, "HTSAT derived buffer (relative position index / shift mask), recomputed by openclap"
                )
            elif FUSION_KEYS.fullmatch(rest):
                report.drop(key, FUSION_REASON)
            else:
                dst = "audio_encoder." + rest
        elif key.startswith("text_branch."):
            rest = key[len("text_branch.") :]
            if TRANSFORMERS_BUFFERS.fullmatch(rest):
                report.drop(key, TRANSFORMERS_BUFFER_REASON)
            else:
                dst = "text_encoder.model." + rest
        elif m := _PROJ.fullmatch(key):
            dst = f"{m.group(1)}_projection.linear{1 if m.group(2) == '0' else 2}.{m.group(3)}"
        elif key == "logit_scale_a":
            dst = "logit_scale"
        elif key == "logit_scale_t":
            report.drop(key, "LAION's second temperature, used only by its MLP-branch training loss")
        elif key.startswith(("text_transform.", "audio_transform.")):
            report.drop(key, "LAION's MLP-branch (MLPLayers), used only by its training loss")
        else:
            unknown.append(key)
        if dst is not None:
            out[dst] = value
            report.map(key, dst)
    if any(r == FUSION_REASON for _, r in report.dropped):
        report.notes.append(
            "fusion checkpoint: embeddings of clips up to 10 s equal LAION's; longer clips are windowed, "
            "not fused"
        )
    return finish(out, report, config, unknown, likely_laion_preset(state_dict)), report
