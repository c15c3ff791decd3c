"""msclap checkpoints (``CLAP_weights_2022.pth``, ``CLAP_weights_2023.pth``, ``clapcap_weights_2023.pth``).

Key layout (facts from microsoft/CLAP ``msclap/models/clap.py``, ``audio.py``, ``htsat.py``, ``mapper.py``):

    audio_encoder.base.htsat.*     HTSAT_Swin_Transformer (2023), inside msclap's HTSATWrapper
    audio_encoder.base.*           Cnn14 (2022)
    audio_encoder.projection.*     Projection(linear1, linear2, layer_norm)
    caption_encoder.base.*         transformers AutoModel: GPT-2 (2023) or BERT base (2022)
    caption_encoder.projection.*   Projection
    logit_scale

Both audio encoders carry torchlibrosa's frozen front end (``spectrogram_extractor.*``,
``logmel_extractor.melW``): dropped, after comparing ``melW`` with the preset's filterbank. HTSAT's
persisted ``relative_position_index`` / ``attn_mask`` buffers are compared with openclap's and dropped.

``clapcap_weights_2023.pth`` (msclap's ``ClapCaptionModel``) keeps only CLAP's *audio* tower, as
``clap.base.*`` / ``clap.projection.*`` (``self.clap = clap.audio_encoder``), next to the GPT-2 decoder
(``gpt.*``) and the prefix mapper (``clap_project.*``). Its text tower must come from another checkpoint
(``text_source``, e.g. ``CLAP_weights_2023.pth``).
"""

from __future__ import annotations

from torch import Tensor

from openclap.config import ClapConfig
from openclap.convert.common import (
    TORCHLIBROSA_KEYS,
    TRANSFORMERS_BUFFER_REASON,
    TRANSFORMERS_BUFFERS,
    ConversionError,
    check_mel_filterbank,
    finish,
    htsat_buffer,
    is_htsat_buffer,
)
from openclap.convert.report import ConversionReport

CLAPCAP_REASON = "clapcap's captioning part (GPT-2 decoder / prefix mapper), not part of CLAP"


def is_msclap(state_dict: dict[str, Tensor]) -> bool:
    """True for msclap CLAP or clapcap state dicts."""
    return any(k.startswith(("caption_encoder.", "audio_encoder.base.")) for k in state_dict) or is_clapcap(
        state_dict
    )


def is_clapcap(state_dict: dict[str, Tensor]) -> bool:
    """True for msclap's ClapCaption state dict (``clap.*`` audio tower + ``gpt.*`` decoder)."""
    return any(k.startswith("clap.base.") for k in state_dict) and any(
        k.startswith("gpt.") for k in state_dict
    )


def likely_msclap_preset(state_dict: dict[str, Tensor]) -> str | None:
    """The msclap preset a state dict was made for, from its encoders' key names."""
    if any(
        k.startswith(("caption_encoder.base.wte.", "audio_encoder.base.htsat.", "clap.base.htsat."))
        for k in state_dict
    ):
        return "msclap-2023"
    if any(
        k.startswith(("caption_encoder.base.embeddings.", "audio_encoder.base.conv_block1."))
        for k in state_dict
    ):
        return "msclap-2022"
    return None


def _convert_audio(
    key: str,
    value: Tensor,
    base: str,
    proj: str,
    config: ClapConfig,
    out: dict[str, Tensor],
    report: ConversionReport,
) -> bool:
    """Map one audio-tower key (under prefixes ``base``/``proj``); False if it is not one."""
    if key.startswith(proj):
        dst = "audio_projection." + key[len(proj) :]
        out[dst] = value
        report.map(key, dst)
        return True
    if not key.startswith(base):
        return False
    rest = key[len(base) :]
    rest = rest.removeprefix("htsat.")
    if rest in TORCHLIBROSA_KEYS:
        if rest == "logmel_extractor.melW":
            check_mel_filterbank(value, config, report, key)
        report.drop(key, TORCHLIBROSA_KEYS[rest])
        return True
    if is_htsat_buffer(rest):
        problem = htsat_buffer(rest, value, config)
        if problem is not None:
            report.buffer_problems.append(problem)
        else:
            report.checked.append(key)
        report.drop(
            key, "HTSAT derived buffer (relative position index / shift mask), recomputed by openclap"
        )
        return True
    dst = "audio_encoder." + rest
    out[dst] = value
    report.map(key, dst)
    return True


def _convert_text(key: str, value: Tensor, out: dict[str, Tensor], report: ConversionReport) -> bool:
    if key.startswith("caption_encoder.projection."):
        dst = "text_projection." + key[len("caption_encoder.projection.") :]
    elif key.startswith("caption_encoder.base."):
        rest = key[len("caption_encoder.base.") :]
        if TRANSFORMERS_BUFFERS.fullmatch(rest):
            report.drop(key, TRANSFORMERS_BUFFER_REASON)
            return True
        dst = "text_encoder.model." + rest
    else:
        return False
    out[dst] = value
    report.map(key, dst)
    return True


def convert_msclap(
    state_dict: dict[str, Tensor],
    config: ClapConfig,
    source: str = "msclap checkpoint",
    text_source: dict[str, Tensor] | None = None,
) -> tuple[dict[str, Tensor], ConversionReport]:
    """msclap state dict -> (openclap state dict, report); strict: every tensor mapped or explained.

    For a clapcap state dict, ``text_source`` (an msclap CLAP state dict, e.g. the 2023 weights) supplies
    the text tower and logit scale that clapcap does not contain.
    """
    report = ConversionReport(source=source, format="msclap", preset=config.name)
    out: dict[str, Tensor] = {}
    unknown: list[str] = []
    clapcap = is_clapcap(state_dict)
    if clapcap:
        report.notes.append("clapcap checkpoint: CLAP's audio tower taken from clap.*")
        if text_source is None:
            raise ConversionError(
                f"{source} is a clapcap checkpoint: it holds CLAP's audio tower only (msclap's ClapCaption keeps "
                "clap.audio_encoder, not the text encoder). Pass the text tower from an msclap CLAP checkpoint, "
                "e.g. convert_msclap(..., text_source=<CLAP_weights_2023.pth state dict>) or "
                "`openclap convert msclap clapcap_weights_2023.pth --text-from CLAP_weights_2023.pth`."
            )
        base, proj = "clap.base.", "clap.projection."
    else:
        base, proj = "audio_encoder.base.", "audio_encoder.projection."
    for key, value in state_dict.items():
        if _convert_audio(key, value, base, proj, config, out, report):
            continue
        if clapcap and key.startswith(("gpt.", "clap_project.")):
            report.drop(key, CLAPCAP_REASON)
            continue
        if not clapcap and key == "logit_scale":
            out["logit_scale"] = value
            report.map(key, "logit_scale")
            continue
        if not clapcap and _convert_text(key, value, out, report):
            continue
        unknown.append(key)
    if clapcap and text_source is not None:
        for key, value in text_source.items():
            if key == "logit_scale":
                out["logit_scale"] = value
                report.map("text_source:" + key, "logit_scale")
            elif key.startswith("caption_encoder."):
                sub = ConversionReport(source=source, format="msclap", preset=config.name)
                _convert_text(key, value, out, sub)
                report.mapped += [("text_source:" + s, d) for s, d in sub.mapped]
                report.dropped += [("text_source:" + s, r) for s, r in sub.dropped]
            else:
                report.drop(
                    "text_source:" + key, "audio tower of the text source (clapcap's audio tower is used)"
                )
        report.notes.append("text tower and logit scale taken from the text source checkpoint")
    likely = likely_msclap_preset(state_dict)
    return finish(out, report, config, unknown, likely), report


def export_msclap(state_dict: dict[str, Tensor], config: ClapConfig) -> dict[str, Tensor]:
    """openclap state dict -> msclap's CLAP layout (inverse of the renames in ``convert_msclap``).

    The result loads into msclap's ``CLAP`` (which itself loads with ``strict=False``); derived buffers
    and the torchlibrosa front end are not written, msclap rebuilds them.
    """
    base = "audio_encoder.base.htsat." if config.audio.encoder == "htsat" else "audio_encoder.base."
    renames = (
        ("audio_encoder.", base),
        ("audio_projection.", "audio_encoder.projection."),
        ("text_encoder.model.", "caption_encoder.base."),
        ("text_projection.", "caption_encoder.projection."),
    )
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        for old, new in renames:
            if key.startswith(old):
                out[new + key[len(old) :]] = value
                break
        else:
            out[key] = value  # logit_scale
    return out
