"""Compile once: the encoders as AOTInductor packages, built on first use and reused by later processes.

``openclap.load(..., compile=True)`` (CLI ``--compile``) in float32 exports the audio encoder (log-mel ->
features; the log-mel front end stays eager: an FFT and a matrix product, cheap and exact) and the text
encoder (ids + mask -> features) with ``torch.export`` (dynamic batch, dynamic text length), compiles
them with AOTInductor and writes ``audio.pt2`` and ``text.pt2`` to a cache directory keyed by the
model's fingerprint (config and weights), the torch version, the device type and the machine (CPU
architecture and instruction-set flags). The first process pays the compile (minutes); a later one on
the same machine loads the packages in about a second. ``benchmarks/compile_start.py`` measures both.

The cache lives in ``$OPENCLAP_COMPILE_CACHE``, else ``$XDG_CACHE_HOME/openclap/compiled``, else
``~/.cache/openclap/compiled``; each package embeds its weights, so the cache holds about one copy of
the model per key. Delete a key's directory to force a recompile.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
import types
from pathlib import Path

import torch

from openclap.errors import model_fingerprint
from openclap.hardware import cpu_flags

logger = logging.getLogger(__name__)

AUDIO_PACKAGE = "audio.pt2"
TEXT_PACKAGE = "text.pt2"


def compile_cache_root() -> Path:
    """Where compiled packages are kept (see the module docstring)."""
    if os.environ.get("OPENCLAP_COMPILE_CACHE"):
        return Path(os.environ["OPENCLAP_COMPILE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "openclap" / "compiled"


def _machine_key(device: torch.device) -> dict:
    """What a compiled kernel depends on besides the model: torch, device and instruction set."""
    flags = " ".join(cpu_flags())  # generated code targets this CPU's vector extensions
    key = {"torch": torch.__version__, "device": device.type, "machine": platform.machine(), "cpu": flags}
    if device.type == "cuda":
        key["gpu"] = torch.cuda.get_device_name(device)
    return key


def compile_cache_dir(model: torch.nn.Module, device: torch.device) -> Path:
    """The directory holding this model's packages for this machine."""
    digest = hashlib.blake2b(json.dumps(_machine_key(device), sort_keys=True).encode(), digest_size=8)
    return compile_cache_root() / f"{model_fingerprint(model)}-{digest.hexdigest()}"


class _AudioFeatures(torch.nn.Module):
    """Log-mel (B, frames, n_mels) -> (B, width) features: the exported audio graph."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        return self.encoder(logmel).features


def _package(path: Path, module: torch.nn.Module, args: tuple, dynamic_shapes: tuple, name: str) -> Path:
    """Export and AOT-compile ``module`` to ``path`` (written atomically) unless it exists; returns it."""
    if path.is_file():
        return path
    from torch._inductor import aoti_compile_and_package

    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    logger.warning("compiling the %s once for this machine into %s (minutes; later runs load it)", name, path)
    try:
        with torch.no_grad():
            program = torch.export.export(module, args, dynamic_shapes=dynamic_shapes)
            tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.pt2")
            aoti_compile_and_package(program, package_path=str(tmp))
    except Exception as exc:  # export/inductor raise many types; the message names the option and the fix
        raise RuntimeError(
            f"compiling the {name} failed (openclap.load(compile=True), CLI --compile); run without it, "
            f"or fix the compiler setup (a C++ compiler is needed): {type(exc).__name__}: {exc}"
        ) from exc
    os.replace(tmp, path)
    logger.info("compiled the %s in %.0f s", name, time.perf_counter() - t0)
    return path


def _load(path: Path, device: torch.device):
    from torch._inductor import aoti_load_package

    index = device.index if device.type == "cuda" and device.index is not None else -1
    return aoti_load_package(str(path), device_index=index)


def compile_once(model: torch.nn.Module, device: torch.device) -> Path:
    """Run ``model``'s audio and text encoders from cached AOTInductor packages (compiled if missing).

    Replaces ``model.encode_audio_features`` (front end eager, encoder compiled) and the text encoder's
    ``forward`` on this instance. The packages are a snapshot of the weights: change them in place after
    this and the compiled encoders do not see it (a ``copy.deepcopy`` runs eagerly). Returns the package
    directory.
    """
    directory = compile_cache_dir(model, device)
    frontend, encoder = model.audio_frontend, model.audio_encoder
    audio_cfg = model.config.audio
    wave = torch.zeros(2, round(audio_cfg.duration * audio_cfg.frontend.sample_rate), device=device)
    with torch.no_grad():
        logmel = frontend(wave)
    batch = torch.export.Dim("batch", min=1, max=65536)
    audio_path = _package(
        directory / AUDIO_PACKAGE, _AudioFeatures(encoder).eval(), (logmel,), ({0: batch},), "audio encoder"
    )
    ids = torch.ones(2, 8, dtype=torch.long, device=device)
    length = torch.export.Dim("length", min=2, max=model.config.text.max_length * 4)
    text_path = _package(
        directory / TEXT_PACKAGE,
        model.text_encoder.eval(),
        (ids, torch.ones_like(ids)),
        ({0: batch, 1: length}, {0: batch, 1: length}),
        "text encoder",
    )
    audio_runner, text_runner = _load(audio_path, device), _load(text_path, device)
    text_encoder = model.text_encoder

    # The packages hold the weights as they were: a copy of the model (copy.deepcopy, which rebinds these
    # methods to the copy) may change its weights, so it runs its own modules eagerly.
    def encode_audio_features(self: torch.nn.Module, waveform: torch.Tensor) -> torch.Tensor:
        if self is not model:
            return type(self).encode_audio_features(self, waveform)
        if waveform.ndim != 2:
            raise ValueError(f"waveform must be (batch, samples), got shape {tuple(waveform.shape)}")
        return audio_runner(self.audio_frontend(waveform))

    def text_forward(self: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        if self is not text_encoder:
            return type(self).forward(self, input_ids, attention_mask)
        return text_runner(input_ids, attention_mask)

    model.encode_audio_features = types.MethodType(encode_audio_features, model)
    model.text_encoder.forward = types.MethodType(text_forward, model.text_encoder)
    return directory
