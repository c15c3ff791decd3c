"""msclap's captioning checkpoint (``clapcap_weights_2023.pth``) -> openclap ``CaptionModel`` state dict.

Key layout of msclap's ``ClapCaptionModel`` (microsoft/CLAP ``msclap/models/mapper.py``, loaded by
``CLAPWrapper.load_clapcap`` from ``{'model': state_dict}``):

    clap.base.htsat.*              CLAP's HTSAT audio encoder (``self.clap = clap.audio_encoder``)
    clap.projection.*              CLAP's audio projection
    clap_project.linear.*          TransformerMapper: embedding -> clip_length x 768
    clap_project.prefix_const      TransformerMapper: the prefix_length learnt constants
    clap_project.transformer.layers.N.{norm1,attn.to_queries,attn.to_keys_values,attn.project,norm2,mlp.fc1,mlp.fc2}.*
    clap_project.model.{0,2}.*     MLP mapper (mapping_type "mlp")
    gpt.transformer.*, gpt.lm_head.weight   transformers GPT2LMHeadModel (lm_head tied to wte)

Mapping: ``clap.base.htsat.X -> audio_encoder.X``, ``clap.projection.X -> audio_projection.X``,
``clap_project.model.N -> mapper.net.N``, other ``clap_project.X -> mapper.X``, ``gpt.X -> decoder.X``.
torchlibrosa's front-end tensors are dropped after comparing the mel filterbank with the preset's; HTSAT's
derived buffers are compared with openclap's and dropped; GPT-2's constant attention buffers are dropped;
``gpt.lm_head.weight`` must equal the token embedding (tied) and is dropped.

msclap's loader uses ``load_state_dict(strict=False)`` and builds GPT-2 with ``from_pretrained("gpt2")``;
if a checkpoint lacks the (frozen) ``gpt.*`` tensors, pass ``gpt2=`` a local transformers GPT-2 directory
(e.g. a snapshot of the hub repo ``gpt2``); openclap never downloads it.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import torch
from torch import Tensor

from openclap.caption.config import CaptionConfig
from openclap.caption.model import TIED_KEY, TIED_SOURCE, CaptionModel
from openclap.convert.common import (
    TORCHLIBROSA_KEYS,
    TRANSFORMERS_BUFFER_REASON,
    TRANSFORMERS_BUFFERS,
    ConversionError,
    check_mel_filterbank,
    htsat_buffer,
    is_htsat_buffer,
)
from openclap.convert.io import load_state_dict
from openclap.convert.report import ConversionReport

logger = logging.getLogger(__name__)

_MLP = re.compile(r"clap_project\.model\.(\d+)\.(weight|bias)")


def is_clapcap_state_dict(state_dict: dict[str, Tensor]) -> bool:
    """True for msclap's ClapCaptionModel state dict (``clap.*`` audio tower and ``clap_project.*`` mapper)."""
    return any(k.startswith("clap.base.") for k in state_dict) and any(
        k.startswith("clap_project.") for k in state_dict
    )


def _expected_shapes(config: CaptionConfig) -> dict[str, torch.Size]:
    try:
        with torch.device("meta"):
            model = CaptionModel(config)
    except Exception as exc:  # noqa: BLE001 - a module computes values at build time: build it for real
        logger.debug("meta build of %r failed (%s); building on the CPU", config.name, exc)
        model = CaptionModel(config)
    return {k: v.shape for k, v in model.state_dict().items()}


def _map_audio(
    key: str, value: Tensor, config: CaptionConfig, out: dict[str, Tensor], report: ConversionReport
) -> bool:
    if key.startswith("clap.projection."):
        dst = "audio_projection." + key[len("clap.projection.") :]
    elif key.startswith("clap.base."):
        rest = key[len("clap.base.") :]
        rest = rest.removeprefix("htsat.")
        if rest in TORCHLIBROSA_KEYS:
            if rest == "logmel_extractor.melW":
                check_mel_filterbank(value, config, report, key)  # type: ignore[arg-type]
            report.drop(key, TORCHLIBROSA_KEYS[rest])
            return True
        if is_htsat_buffer(rest):
            problem = htsat_buffer(rest, value, config)  # type: ignore[arg-type]
            if problem is not None:
                raise ConversionError(
                    f"{report.source}: {problem}. Pass the caption preset the checkpoint was made for."
                )
            report.checked.append(key)
            report.drop(
                key, "HTSAT derived buffer (relative position index / shift mask), recomputed by openclap"
            )
            return True
        dst = "audio_encoder." + rest
    else:
        return False
    out[dst] = value
    report.map(key, dst)
    return True


def _map_gpt(rest: str, key: str, value: Tensor, out: dict[str, Tensor], report: ConversionReport) -> None:
    """``rest``: a GPT2LMHeadModel key (``transformer.*`` / ``lm_head.weight``)."""
    inner = rest.removeprefix("transformer.")
    if TRANSFORMERS_BUFFERS.fullmatch(inner):
        report.drop(key, TRANSFORMERS_BUFFER_REASON)
        return
    if rest == "lm_head.weight":
        out[TIED_KEY] = value  # checked against the embedding (tied) in convert_clapcap
        report.map(key, TIED_KEY)
        return
    dst = "decoder.transformer." + inner
    out[dst] = value
    report.map(key, dst)


def convert_clapcap(
    state_dict: dict[str, Tensor],
    config: CaptionConfig,
    source: str = "clapcap checkpoint",
    gpt2: dict[str, Tensor] | None = None,
) -> tuple[dict[str, Tensor], ConversionReport]:
    """msclap ClapCaption state dict -> (CaptionModel state dict, report); strict: every source tensor is
    mapped or dropped with a reason, every model tensor is filled, shapes match the preset."""
    report = ConversionReport(source=source, format="clapcap", preset=config.name)
    sd = {k.removeprefix("module."): v for k, v in state_dict.items()}
    if not is_clapcap_state_dict(sd):
        raise ConversionError(
            f"{source} is not an msclap clapcap checkpoint (no clap.base.* and clap_project.* tensors; first keys "
            f"{sorted(sd)[:5]}). CLAP checkpoints load with openclap.load(...), not as caption models."
        )
    out: dict[str, Tensor] = {}
    unknown: list[str] = []
    for key, value in sd.items():
        if _map_audio(key, value, config, out, report):
            continue
        if key.startswith("clap_project."):
            m = _MLP.fullmatch(key)
            dst = f"mapper.net.{m.group(1)}.{m.group(2)}" if m else "mapper." + key[len("clap_project.") :]
            out[dst] = value
            report.map(key, dst)
        elif key.startswith("gpt."):
            _map_gpt(key[len("gpt.") :], key, value, out, report)
        else:
            unknown.append(key)
    if not any(k.startswith("decoder.") for k in out):
        if gpt2 is None:
            raise ConversionError(
                f"{source} holds no GPT-2 decoder tensors (gpt.*): msclap fills them with from_pretrained('gpt2'). "
                "Pass gpt2=<state dict of a local GPT-2 base directory> (CLI: --gpt2 DIR); openclap never downloads."
            )
        for key, value in gpt2.items():
            _map_gpt(
                key if key.startswith(("transformer.", "lm_head.")) else "transformer." + key,
                "gpt2:" + key,
                value,
                out,
                report,
            )
        report.notes.append("GPT-2 decoder weights taken from the gpt2 source (not in the checkpoint)")
    if TIED_KEY in out:
        if TIED_SOURCE in out and not torch.equal(out[TIED_KEY], out[TIED_SOURCE]):
            raise ConversionError(
                f"{source}: gpt.lm_head.weight differs from the token embedding; openclap ties them"
            )
        out.pop(TIED_KEY)
        report.notes.append("gpt.lm_head.weight equals gpt.transformer.wte.weight (tied): kept once")
    shapes = _expected_shapes(config)
    shapes.pop(TIED_KEY, None)
    problems = []
    if unknown:
        problems.append(f"{len(unknown)} source tensor(s) no rule maps: {sorted(unknown)[:8]}")
    wrong = [
        f"{k}: checkpoint {tuple(v.shape)} vs preset {tuple(shapes[k])}"
        for k, v in sorted(out.items())
        if k in shapes and v.shape != shapes[k]
    ]
    if wrong:
        problems.append(f"{len(wrong)} shape mismatch(es): " + "; ".join(wrong[:5]))
    extra = sorted(set(out) - set(shapes))
    if extra:
        problems.append(f"{len(extra)} tensor(s) the preset has no place for: {extra[:8]}")
    missing = sorted(set(shapes) - set(out))
    if missing:
        problems.append(f"{len(missing)} preset tensor(s) missing from the checkpoint: {missing[:8]}")
    if problems:
        hint = ""
        if any(k.startswith("mapper.net.") for k in out) != (config.mapper.type == "mlp"):
            hint = " The checkpoint's mapper type differs from the preset's (mapper.type transformer vs mlp)."
        raise ConversionError(
            f"{source} (clapcap) does not fit caption preset {config.name!r}: "
            + " | ".join(problems)
            + "."
            + hint
        )
    return out, report


def convert_clapcap_file(
    path: str | os.PathLike, config: CaptionConfig, gpt2: str | os.PathLike | None = None
) -> tuple[dict[str, Tensor], ConversionReport]:
    """Read ``clapcap_weights_2023.pth`` safely (``weights_only=True``) and convert it for ``config``."""
    p = Path(path)
    gpt2_sd = load_state_dict(gpt2) if gpt2 is not None else None
    return convert_clapcap(load_state_dict(p), config, source=str(p), gpt2=gpt2_sd)
