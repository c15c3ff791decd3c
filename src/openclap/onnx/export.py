"""Export a CLAP model to ONNX: audio tower, text tower, tokenizer and pre-processing description.

The audio tower takes **log-mel** input, not the waveform: the front end computes its STFT, power, mel
filterbank and log in float64 (``openclap.audio.frontend``: < 1e-5 dB from the exact values, where a float32
STFT is off by up to 7e-2 dB in quiet cells), and float64 DFT/STFT support differs between ONNX runtimes.
So the front end stays outside the graph, exact and cheap (about 5 % of the audio tower's time), written
as numpy in ``openclap.onnx.runtime`` and described in ``preprocessing.json`` with its window and
filterbank saved as ``.npy`` so that any other runtime can reproduce it with an FFT and a matrix product.

Files written to ``out_dir``:

    audio.onnx            logmel (B, frames, n_mels) float32 -> audio_embeds (B, embed_dim), L2-normalised
    text.onnx             input_ids, attention_mask (B, L) int64 -> text_embeds (B, embed_dim), L2-normalised
    tokenizer/            tokenizer.json + tokenizer_config.json (``tokenizers`` library format)
    preprocessing.json    rates, window, hop, padding, mel parameters, text rules, the model config
    frontend_window.npy   (n_fft,) float64 analysis window;  mel_filterbank.npy  (n_fft//2+1, n_mels) float64

Batch is dynamic in both graphs (and the text length); the audio graph's frame count is fixed to one window
(``num_frames``), as the pipeline always feeds whole windows.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from openclap.model import ClapModel
from openclap.onnx.runtime import (
    AUDIO_FILE,
    FILTERBANK_FILE,
    FORMAT_VERSION,
    PREPROCESSING_FILE,
    TEXT_FILE,
    TOKENIZER_DIR,
    WINDOW_FILE,
)

logger = logging.getLogger(__name__)

OPSET = 18


class AudioTower(nn.Module):
    """log-mel (B, frames, n_mels) -> L2-normalised audio embeddings (B, embed_dim)."""

    def __init__(self, model: ClapModel) -> None:
        super().__init__()
        self.encoder = model.audio_encoder
        self.projection = model.audio_projection

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.projection(self.encoder(logmel).features), dim=-1)


class TextTower(nn.Module):
    """input_ids, attention_mask (B, L) -> L2-normalised text embeddings (B, embed_dim)."""

    def __init__(self, model: ClapModel) -> None:
        super().__init__()
        self.encoder = model.text_encoder
        self.projection = model.text_projection

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.projection(self.encoder(input_ids, attention_mask)), dim=-1)


def preprocessing_description(pipeline: Any) -> dict[str, Any]:
    """What a runtime must do before the graphs: a JSON-able dict (see docs/onnx.md)."""
    cfg = pipeline.config
    fe = cfg.audio.frontend
    tok = pipeline.tokenizer
    return {
        "format_version": FORMAT_VERSION,
        "audio": {
            "sample_rate": cfg.audio.sample_rate,
            "num_samples": cfg.audio.num_samples,  # one window; shorter clips are padded, longer split
            "num_frames": pipeline.model.audio_frontend.num_frames(cfg.audio.num_samples),
            "hop_seconds": cfg.audio.hop_seconds,  # distance between window starts of a long clip
            "pad_mode": cfg.audio.pad_mode,  # repeat | zero | repeatpad (openclap.audio.windows)
            "mono": "mean of the channels",
            "pooling": "mean of the window embeddings, then L2-normalised",
            "frontend": {
                # LAION: clip to [-1, 1], * 32767, truncate to int16, / 32767 (float32) before the STFT
                "int16_round_trip": bool(getattr(fe, "int16_round_trip", False)),
                "n_fft": fe.n_fft,
                "hop_length": fe.hop_length,
                "win_length": fe.win_length,
                "center": fe.center,
                "pad_mode": fe.pad_mode,
                "window": f"periodic Hann, centred in n_fft: {WINDOW_FILE}",
                "power": "re^2 + im^2 of the one-sided FFT, computed in float64",
                "mel_filterbank": f"{FILTERBANK_FILE}: power (frames, n_fft//2+1) @ filterbank",
                "filterbank_sample_rate": fe.filterbank_sample_rate or fe.sample_rate,
                "n_mels": fe.n_mels,
                "f_min": fe.f_min,
                "f_max": fe.f_max,
                "mel_scale": fe.mel_scale,
                "mel_norm": fe.mel_norm,
                "amin": fe.amin,
                "top_db": fe.top_db,  # per clip, relative to its maximum; null = no clamp
                "log": "10 * log10(max(mel, amin)), cast to float32",
            },
        },
        "text": {
            "tokenizer": f"{TOKENIZER_DIR}/tokenizer.json",
            "text_suffix": cfg.text.text_suffix,  # appended to each text before tokenising
            "max_length": cfg.text.max_length,
            "padding": cfg.text.padding,  # max_length | longest; right padding with pad_token_id
            "truncation": cfg.text.truncation,
            "pad_token": tok.pad_token,
            "pad_token_id": tok.pad_token_id,
        },
        "embed_dim": cfg.embed_dim,
        "logit_scale": float(pipeline.model.scale().detach()),
        "config": cfg.to_dict(),
    }


def _export(
    module: nn.Module, args: tuple[torch.Tensor, ...], path: Path, names: list[str], dynamic: dict
) -> None:
    torch.onnx.export(
        module,
        args,
        str(path),
        input_names=names,
        output_names=["embeds"],
        dynamic_axes={**dynamic, "embeds": {0: "batch"}},
        opset_version=OPSET,
        dynamo=False,
    )


def export_onnx(pipeline: Any, out_dir: str | os.PathLike) -> Path:
    """Write the ONNX files of a ``ClapPipeline`` (fp32, CPU) into ``out_dir``; returns the directory."""
    model = pipeline.model
    if not isinstance(model, ClapModel):
        raise TypeError(
            f"export needs a float ClapModel pipeline, got {type(model).__name__} (int8 copies cannot be exported)"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    desc = preprocessing_description(pipeline)
    audio = AudioTower(model).eval()
    fast = getattr(model.audio_encoder, "fast_path", None)
    if fast is not None:  # the plain Swin path: roll + partition traces to static reshapes for any batch
        model.audio_encoder.set_fast_path(False)
    try:
        frames, mels = desc["audio"]["num_frames"], desc["audio"]["frontend"]["n_mels"]
        with torch.no_grad():
            _export(
                audio, (torch.zeros(2, frames, mels),), out / AUDIO_FILE, ["logmel"], {"logmel": {0: "batch"}}
            )
    finally:
        if fast is not None:
            model.audio_encoder.set_fast_path(fast)
    tokens = pipeline.tokenizer(["a dog barks", "rain"])
    with torch.no_grad():
        _export(
            TextTower(model).eval(),
            (tokens["input_ids"], tokens["attention_mask"]),
            out / TEXT_FILE,
            ["input_ids", "attention_mask"],
            {"input_ids": {0: "batch", 1: "length"}, "attention_mask": {0: "batch", 1: "length"}},
        )
    pipeline.tokenizer.save_pretrained(out / TOKENIZER_DIR)
    frontend = model.audio_frontend
    np.save(out / WINDOW_FILE, frontend.window.detach().cpu().double().numpy())
    np.save(out / FILTERBANK_FILE, frontend.mel_fb.detach().cpu().double().numpy())
    (out / PREPROCESSING_FILE).write_text(json.dumps(desc, indent=2) + "\n")
    logger.info("exported ONNX audio and text towers to %s", out)
    return out
