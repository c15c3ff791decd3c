"""transformers ``ClapModel`` directories (``config.json`` + ``model.safetensors`` / ``pytorch_model.bin``).

transformers' ClapModel is LAION-CLAP re-implemented (facts from transformers
``models/clap/modeling_clap.py``): the audio tower is HTSAT with Swin-style module names, the text tower is
RoBERTa, projections are Linear -> ReLU -> Linear. Key renames (``audio_model.audio_encoder.`` ->
``audio_encoder.``):

    batch_norm.*                                   bn0.*
    layers.i.blocks.j.layernorm_before.*           layers.i.blocks.j.norm1.*
    ...attention.self.{query,key,value}.*          ...attn.qkv.*   (concatenated q, k, v along dim 0)
    ...attention.self.relative_position_bias_table ...attn.relative_position_bias_table
    ...attention.output.dense.*                    ...attn.proj.*
    ...layernorm_after.*                           ...norm2.*
    ...intermediate.dense.* / ...output.dense.*    ...mlp.fc1.* / ...mlp.fc2.*
    text_model.*                                   text_encoder.model.*
    logit_scale_a                                  logit_scale   (logit_scale_t dropped)

ClapAudioModel has no AudioSet head (HTSAT's ``tscam_conv`` / ``head``): those openclap tensors are filled
with zeros and reported; embeddings never use them. Its feature extractor (``ClapFeatureExtractor``)
computes a power mel spectrogram with a periodic Hann window, reflect-padded centred frames, and
``10 * log10(max(x, 1e-10))``: Slaney-scale, Slaney-normalised filters for ``truncation="rand_trunc"``
and HTK-scale unnormalised filters for ``"fusion"`` (the same split as LAION's own code).
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from openclap.config import ClapConfig, ConfigError
from openclap.convert.common import (
    TRANSFORMERS_BUFFER_REASON,
    TRANSFORMERS_BUFFERS,
    ConversionError,
    finish,
    htsat_buffer,
    is_htsat_buffer,
)
from openclap.convert.report import ConversionReport

logger = logging.getLogger(__name__)

_AUDIO = "audio_model.audio_encoder."
_BLOCK = re.compile(r"layers\.(\d+)\.blocks\.(\d+)\.(.+)")
_BLOCK_RENAMES = {
    "layernorm_before.": "norm1.",
    "attention.self.relative_position_bias_table": "attn.relative_position_bias_table",
    "attention.output.dense.": "attn.proj.",
    "layernorm_after.": "norm2.",
    "intermediate.dense.": "mlp.fc1.",
    "output.dense.": "mlp.fc2.",
}
_QKV = re.compile(r"attention\.self\.(query|key|value)\.(weight|bias)")
_FUSION = re.compile(r"patch_embed\.(fusion_model|mel_conv2d)\..*")
FUSION_REASON = (
    "feature-fusion branch: used by transformers/LAION only for clips longer than the 10 s window; "
    "openclap embeds long clips by windowing instead (fusion not implemented)"
)
HEAD_REASON = "HTSAT AudioSet head (tscam_conv/head): transformers' ClapAudioModel has none; zeros, unused by embeddings"


def is_hf(state_dict: dict[str, Tensor]) -> bool:
    """True for transformers ClapModel state dicts."""
    return any(k.startswith(("audio_model.", "text_model.")) for k in state_dict)


def _audio_key(rest: str) -> str:
    """openclap name of a ClapAudioEncoder tensor other than q/k/v (those are merged separately)."""
    if rest.startswith("batch_norm."):
        return "bn0." + rest[len("batch_norm.") :]
    m = _BLOCK.fullmatch(rest)
    if m:
        i, j, tail = m.groups()
        for old, new in _BLOCK_RENAMES.items():
            if tail.startswith(old):
                return f"layers.{i}.blocks.{j}.{new}{tail[len(old) :]}"
        return f"layers.{i}.blocks.{j}.{tail}"
    return rest  # patch_embed.*, layers.i.downsample.*, norm.*


def convert_hf(
    state_dict: dict[str, Tensor], config: ClapConfig, source: str = "transformers ClapModel"
) -> tuple[dict[str, Tensor], ConversionReport]:
    """transformers ClapModel state dict -> (openclap state dict, report); strict."""
    report = ConversionReport(source=source, format="hf", preset=config.name)
    if config.audio.encoder != "htsat" or config.text.encoder != "roberta" or config.projection != "laion":
        raise ConversionError(
            f"preset {config.name!r} ({config.audio.encoder} + {config.text.encoder}, {config.projection} "
            "projection) cannot hold a transformers ClapModel (HTSAT + RoBERTa, LAION projection); convert the "
            "directory with `openclap convert hf DIR --out OUT`, which derives the preset from its config.json"
        )
    out: dict[str, Tensor] = {}
    unknown: list[str] = []
    qkv: dict[tuple[str, str], dict[str, tuple[str, Tensor]]] = {}  # (block prefix, weight|bias) -> part
    for key, value in state_dict.items():
        dst: str
        if key.startswith(_AUDIO):
            rest = key[len(_AUDIO) :]
            m = _BLOCK.fullmatch(rest)
            q = _QKV.fullmatch(m.group(3)) if m else None
            if m and q:
                part, kind = q.groups()
                qkv.setdefault((f"layers.{m.group(1)}.blocks.{m.group(2)}", kind), {})[part] = (key, value)
                continue
            if m and m.group(3) == "attention.self.relative_position_index":
                ours = f"layers.{m.group(1)}.blocks.{m.group(2)}.attn.relative_position_index"
                problem = htsat_buffer(ours, value, config) if is_htsat_buffer(ours) else None
                if problem is not None:
                    report.buffer_problems.append(problem)
                else:
                    report.checked.append(key)
                report.drop(key, "HTSAT derived buffer (relative position index), recomputed by openclap")
                continue
            if _FUSION.fullmatch(rest):
                report.drop(key, FUSION_REASON)
                continue
            dst = "audio_encoder." + _audio_key(rest)
        elif key.startswith("text_model."):
            rest = key[len("text_model.") :]
            if TRANSFORMERS_BUFFERS.fullmatch(rest):
                report.drop(key, TRANSFORMERS_BUFFER_REASON)
                continue
            dst = "text_encoder.model." + rest
        elif key.startswith(("audio_projection.linear", "text_projection.linear")):
            dst = key
        elif key == "logit_scale_a":
            dst = "logit_scale"
        elif key == "logit_scale_t":
            report.drop(key, "second temperature (text->audio logits); openclap keeps one, logit_scale_a")
            continue
        else:
            unknown.append(key)
            continue
        out[dst] = value
        report.map(key, dst)
    for (block, kind), parts in sorted(qkv.items()):
        if set(parts) != {"query", "key", "value"}:
            unknown.extend(k for k, _ in parts.values())
            continue
        dst = f"audio_encoder.{block}.attn.qkv.{kind}"
        out[dst] = torch.cat([parts[p][1] for p in ("query", "key", "value")], dim=0)
        for p in ("query", "key", "value"):
            report.map(parts[p][0], dst)
    if any(r == FUSION_REASON for _, r in report.dropped):
        report.notes.append(
            "fusion model: clips up to 10 s match transformers; longer clips are windowed, not fused"
        )
    fillable = {r"audio_encoder\.(tscam_conv|head)\.(weight|bias)": HEAD_REASON}
    return finish(out, report, config, unknown, None, fillable), report


# ------------------------------------------------------------------------------------ config


def _pair(v: Any) -> list[int]:
    return [int(v), int(v)] if isinstance(v, (int, float)) else [int(x) for x in v]


def config_from_hf(
    hf_config: dict[str, Any], preprocessor: dict[str, Any] | None = None, name: str = "hf-clap"
) -> ClapConfig:
    """The openclap config equivalent to a transformers ``ClapConfig`` (+ ``ClapFeatureExtractor``) dict.

    Raises ``ConfigError`` for ClapModel options openclap does not implement (naming the option).
    """
    a = dict(hf_config.get("audio_config") or {})
    t = dict(hf_config.get("text_config") or {})
    fe = dict(preprocessor or {})

    def need(cond: bool, what: str) -> None:
        if not cond:
            raise ConfigError(f"transformers ClapModel config: {what} is not supported by openclap")

    need(a.get("hidden_act", "gelu") == "gelu", f"audio hidden_act={a.get('hidden_act')!r}")
    need(a.get("patch_embed_input_channels", 1) == 1, "patch_embed_input_channels != 1")
    need(
        a.get("flatten_patch_embeds", True) and a.get("enable_patch_layer_norm", True),
        "unflattened/unnormalised patch embeds",
    )
    need(
        abs(float(a.get("layer_norm_eps", 1e-5)) - 1e-5) < 1e-12,
        f"audio layer_norm_eps={a.get('layer_norm_eps')}",
    )
    need(hf_config.get("projection_hidden_act", "relu") == "relu", "projection_hidden_act other than relu")
    need(
        t.get("model_type", "clap_text_model") == "clap_text_model",
        f"text model_type {t.get('model_type')!r}",
    )
    fusion = bool(a.get("enable_fusion", False))
    need(not fusion or a.get("fusion_type") in (None, "aff_2d"), f"fusion_type={a.get('fusion_type')!r}")
    embed = int(a.get("patch_embeds_hidden_size", 96))
    depths = [int(d) for d in a.get("depths", (2, 2, 6, 2))]
    width = embed * 2 ** (len(depths) - 1)
    need(int(a.get("hidden_size", 768)) == width, f"audio hidden_size {a.get('hidden_size')} != {width}")
    n_mels = int(a.get("num_mel_bins", 64))
    need(int(fe.get("feature_size", n_mels)) == n_mels, "feature_size != num_mel_bins")
    truncation = fe.get("truncation", "fusion")
    padding = fe.get("padding", "repeatpad")
    need(padding in ("repeatpad", "repeat", "pad"), f"feature extractor padding={padding!r}")
    frontend: dict[str, Any] = {
        "sample_rate": int(fe.get("sampling_rate", 48000)),
        "n_fft": int(fe.get("fft_window_size", 1024)),
        "win_length": int(fe.get("fft_window_size", 1024)),
        "hop_length": int(fe.get("hop_length", 480)),
        "n_mels": n_mels,
        "f_min": float(fe.get("frequency_min", 0.0)),
        "f_max": float(fe.get("frequency_max", 14000.0)),
        "top_db": fe.get("top_db"),
    }
    if truncation == "fusion":
        frontend.update({"mel_scale": "htk", "mel_norm": None})
    text_keys = (
        "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
        "hidden_act", "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "pad_token_id",
        "bos_token_id", "eos_token_id", "hidden_dropout_prob", "attention_probs_dropout_prob",
    )  # fmt: skip
    defaults = {"vocab_size": 50265, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                "intermediate_size": 3072, "hidden_act": "gelu", "max_position_embeddings": 514,
                "type_vocab_size": 1, "layer_norm_eps": 1e-12, "pad_token_id": 1, "bos_token_id": 0,
                "eos_token_id": 2, "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1}  # fmt: skip
    transformer = {k: t.get(k, defaults[k]) for k in text_keys}
    data = {
        "name": name,
        "embed_dim": int(hf_config.get("projection_dim", 512)),
        "projection": "laion",
        "projection_dropout": 0.0,
        "logit_scale_init": math.log(float(hf_config.get("logit_scale_init_value", 1 / 0.07))),
        "audio": {
            "encoder": "htsat",
            "duration": float(fe.get("max_length_s", 10)),
            "pad_mode": {"repeatpad": "repeatpad", "repeat": "repeat", "pad": "zero"}[padding],
            "frontend": frontend,
            "htsat": {
                "patch_size": int(_pair(a.get("patch_size", 4))[0]),
                "patch_stride": _pair(a.get("patch_stride", (4, 4))),
                "embed_dim": embed,
                "depths": depths,
                "num_heads": [int(h) for h in a.get("num_attention_heads", (4, 8, 16, 32))],
                "window_size": int(a.get("window_size", 8)),
                "spec_size": int(a.get("spec_size", 256)),
                "mlp_ratio": float(a.get("mlp_ratio", 4.0)),
                "qkv_bias": bool(a.get("qkv_bias", True)),
                "drop_path_rate": float(a.get("drop_path_rate", 0.0)),
                "num_classes": int(a.get("num_classes", 527)),
            },
        },
        "text": {
            "encoder": "roberta",
            "transformer": transformer,
            "pooling": "pooler",
            "max_length": 77,
            "tokenizer": "roberta-base",
            "padding": "max_length",
            "truncation": "right",
        },
    }
    return ClapConfig.from_dict(data)


def read_hf_dir(directory: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``config.json`` and the feature extractor settings of a transformers ClapModel directory.

    The feature extractor is read from ``preprocessor_config.json`` (``ClapFeatureExtractor.save_pretrained``,
    and ``ClapProcessor`` in transformers 4.x) or ``processor_config.json`` (``ClapProcessor`` in
    transformers 5.x, nested under ``feature_extractor``). Without either the front end is unknown (the
    truncation mode alone switches the mel filterbank), so this raises instead of guessing.
    """
    d = Path(directory)
    cfg_path = d / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{d} has no config.json; pass a transformers ClapModel directory")
    hf_config = json.loads(cfg_path.read_text())
    if hf_config.get("model_type") != "clap":
        raise ConversionError(
            f"{cfg_path}: model_type is {hf_config.get('model_type')!r}, not 'clap'; this is not a transformers "
            "ClapModel directory"
        )
    for name in ("preprocessor_config.json", "processor_config.json"):
        path = d / name
        if path.is_file():
            data = json.loads(path.read_text())
            preprocessor = data.get("feature_extractor", data)  # ClapProcessor nests it
            if not isinstance(preprocessor, dict) or "feature_size" not in preprocessor:
                raise ConversionError(
                    f"{path} holds no ClapFeatureExtractor settings (no feature_size); save the model's "
                    "feature extractor beside it with ClapFeatureExtractor.save_pretrained(DIR)"
                )
            return hf_config, preprocessor
    raise FileNotFoundError(
        f"{d} has neither preprocessor_config.json nor processor_config.json, so its audio front end is "
        "unknown; save the model's feature extractor beside config.json (ClapProcessor.save_pretrained(DIR) "
        "or ClapFeatureExtractor.save_pretrained(DIR)) or pass --model PRESET"
    )
