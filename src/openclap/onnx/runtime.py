"""Run an exported model (``openclap export onnx``) with ONNX Runtime: numpy in, embeddings out.

Needs numpy, soundfile, soxr, tokenizers and onnxruntime (``pip install "openclap[onnx]"``); PyTorch is
not imported. The pre-processing follows ``preprocessing.json`` and equals the PyTorch pipeline's: decode,
mono mean, soxr resample (``openclap.audio.io``), pad or split into windows (``openclap.audio.windows``
rules, re-written in numpy here), float64 log-mel, the audio graph per window, mean of the window
embeddings, L2 normalisation.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from openclap.config import TextConfig

# The export's file names and format (openclap.onnx.export writes them).
AUDIO_FILE = "audio.onnx"
TEXT_FILE = "text.onnx"
PREPROCESSING_FILE = "preprocessing.json"
WINDOW_FILE = "frontend_window.npy"
FILTERBANK_FILE = "mel_filterbank.npy"
TOKENIZER_DIR = "tokenizer"
FORMAT_VERSION = 1

# torch.stft pad modes -> numpy.pad modes
_NP_PAD = {"reflect": "reflect", "constant": "constant", "replicate": "edge", "circular": "wrap"}


def fit_to_length(wave: np.ndarray, num_samples: int, pad_mode: str) -> np.ndarray:
    """(L,) -> (num_samples,): the rules of ``openclap.audio.windows.fit_to_length`` in numpy."""
    length = wave.shape[0]
    if length >= num_samples:
        return wave[:num_samples]
    if pad_mode == "zero":
        return np.pad(wave, (0, num_samples - length))
    if pad_mode == "repeatpad":
        tiled = np.tile(wave, num_samples // length)
        return np.pad(tiled, (0, num_samples - tiled.shape[0]))
    if pad_mode == "repeat":
        return np.tile(wave, -(-num_samples // length))[:num_samples]
    raise ValueError(f"pad_mode must be 'repeat', 'zero' or 'repeatpad', got {pad_mode!r}")


def split_windows(wave: np.ndarray, num_samples: int, hop_samples: int, pad_mode: str) -> np.ndarray:
    """(L,) -> (W, num_samples) windows: ``openclap.audio.windows.split_windows`` in numpy."""
    length = wave.shape[0]
    if length <= num_samples:
        return fit_to_length(wave, num_samples, pad_mode)[None]
    count = 1 + -(-(length - num_samples) // hop_samples)
    starts = [min(k * hop_samples, length - num_samples) for k in range(count)]
    return np.stack([wave[s : s + num_samples] for s in starts])


class LogMel:
    """Waveforms (B, samples) -> log-mel (B, frames, n_mels) float32, computed in float64."""

    def __init__(self, frontend: dict[str, Any], window: np.ndarray, filterbank: np.ndarray) -> None:
        self.n_fft = int(frontend["n_fft"])
        self.hop = int(frontend["hop_length"])
        self.center = bool(frontend["center"])
        if frontend["pad_mode"] not in _NP_PAD:
            raise ValueError(f"front-end pad_mode {frontend['pad_mode']!r} is not one of {sorted(_NP_PAD)}")
        self.pad_mode = _NP_PAD[frontend["pad_mode"]]
        self.amin = float(frontend["amin"])
        self.top_db = frontend["top_db"]
        self.int16_round_trip = bool(frontend.get("int16_round_trip", False))
        if window.shape != (self.n_fft,) or filterbank.shape[0] != self.n_fft // 2 + 1:
            raise ValueError(
                f"window {window.shape} / filterbank {filterbank.shape} do not fit n_fft={self.n_fft}; "
                "the export directory is inconsistent: export it again"
            )
        self.window = window.astype(np.float64)
        self.filterbank = filterbank.astype(np.float64)

    def __call__(self, wave: np.ndarray) -> np.ndarray:
        wave = np.asarray(wave, dtype=np.float32)
        if self.int16_round_trip:  # as openclap.audio.frontend.int16_round_trip (laion_clap), in float32
            wave = (np.clip(wave, -1.0, 1.0) * np.float32(32767.0)).astype(np.int16).astype(np.float32)
            wave = wave / np.float32(32767.0)
        x = wave.astype(np.float64)  # (B, S)
        if self.center:
            x = np.pad(x, ((0, 0), (self.n_fft // 2, self.n_fft // 2)), mode=self.pad_mode)
        frames = np.lib.stride_tricks.sliding_window_view(x, self.n_fft, axis=-1)[
            :, :: self.hop
        ]  # (B, T, n_fft)
        spec = np.fft.rfft(frames * self.window, axis=-1)  # (B, T, F)
        power = spec.real**2 + spec.imag**2
        db = 10.0 * np.log10(np.maximum(power @ self.filterbank, self.amin))  # (B, T, M)
        if self.top_db is not None:
            db = np.maximum(db, db.max(axis=(1, 2), keepdims=True) - float(self.top_db))
        return db.astype(np.float32)


class OnnxClap:
    """An exported CLAP model on ONNX Runtime: ``embed_audio``, ``embed_text``, ``similarity``.

    Args:
        directory: the output of ``openclap export onnx``.
        threads: intra-op threads of each session (None: ONNX Runtime's default).
        providers: ONNX Runtime execution providers (default: CPU).
    """

    def __init__(
        self, directory: str | os.PathLike, threads: int | None = None, providers: Sequence[str] | None = None
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ImportError(
                "openclap.onnx needs onnxruntime: pip install onnxruntime (or openclap[onnx])"
            ) from exc
        root = Path(directory)
        for name in (AUDIO_FILE, TEXT_FILE, PREPROCESSING_FILE, WINDOW_FILE, FILTERBANK_FILE, TOKENIZER_DIR):
            if not (root / name).exists():
                raise FileNotFoundError(
                    f"{root / name} is missing: {root} is not a complete ONNX export; "
                    "create it with `openclap export onnx MODEL --out DIR`"
                )
        self.directory = root
        self.pre = json.loads((root / PREPROCESSING_FILE).read_text())
        if self.pre.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{root / PREPROCESSING_FILE} has format_version {self.pre.get('format_version')!r}; this "
                f"openclap reads {FORMAT_VERSION}: export the model again with this version"
            )
        audio = self.pre["audio"]
        self.sample_rate = int(audio["sample_rate"])
        self.num_samples = int(audio["num_samples"])
        self.hop_seconds = float(audio["hop_seconds"])
        self.pad_mode = str(audio["pad_mode"])
        self.logit_scale = float(self.pre["logit_scale"])
        self.logmel = LogMel(audio["frontend"], np.load(root / WINDOW_FILE), np.load(root / FILTERBANK_FILE))
        opts = ort.SessionOptions()
        if threads is not None:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        providers = list(providers) if providers is not None else ["CPUExecutionProvider"]
        self.audio_session = ort.InferenceSession(str(root / AUDIO_FILE), opts, providers=providers)
        self.text_session = ort.InferenceSession(str(root / TEXT_FILE), opts, providers=providers)
        from openclap.text.tokenizer import TextTokenizer

        text_cfg = TextConfig.from_dict(self.pre["config"]["text"])
        self.tokenizer = TextTokenizer(text_cfg, root / TOKENIZER_DIR)

    # ----------------------------------------------------------------------------------- audio
    def _load(self, item: Any, sample_rate: int | None, index: int) -> np.ndarray:
        from openclap.audio.io import load_audio

        if isinstance(item, tuple):
            wave, rate = item
            return load_audio(wave, self.sample_rate, source_rate=rate)
        if isinstance(item, np.ndarray):
            if sample_rate is None:
                raise ValueError(
                    f"input {index} is an array: pass sample_rate=, or give (array, rate) tuples"
                )
            return load_audio(item, self.sample_rate, source_rate=sample_rate)
        return load_audio(item, self.sample_rate)

    def encode_windows(self, windows: np.ndarray) -> np.ndarray:
        """(W, num_samples) float32 windows -> (W, D) L2-normalised embeddings."""
        return self.audio_session.run(None, {"logmel": self.logmel(windows)})[0]

    def embed_audio(
        self,
        inputs: Any,
        *,
        sample_rate: int | None = None,
        batch_size: int = 8,
        hop_seconds: float | None = None,
    ) -> np.ndarray:
        """Files or arrays -> (N, D) float32 L2-normalised embeddings (long clips: mean over windows)."""
        items = [inputs] if isinstance(inputs, (str, os.PathLike, np.ndarray, tuple)) else list(inputs)
        if not items:
            raise ValueError("embed_audio got no inputs; pass at least one file or waveform")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        hop = max(1, round((hop_seconds if hop_seconds is not None else self.hop_seconds) * self.sample_rate))
        windows, counts = [], []
        for index, item in enumerate(items):
            w = split_windows(self._load(item, sample_rate, index), self.num_samples, hop, self.pad_mode)
            windows.append(w)
            counts.append(len(w))
        stacked = np.concatenate(windows).astype(np.float32)
        embeds = np.concatenate(
            [self.encode_windows(stacked[i : i + batch_size]) for i in range(0, len(stacked), batch_size)]
        )
        out, offset = [], 0
        for count in counts:
            mean = embeds[offset : offset + count].mean(axis=0)
            out.append(mean / max(float(np.linalg.norm(mean)), 1e-12))  # F.normalize's eps
            offset += count
        return np.stack(out).astype(np.float32)

    # ------------------------------------------------------------------------------------ text
    def embed_text(self, texts: str | Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """(M, D) float32 L2-normalised text embeddings."""
        items = [texts] if isinstance(texts, str) else list(texts)
        if not items:
            raise ValueError("embed_text got an empty list; pass at least one text")
        out = []
        for start in range(0, len(items), batch_size):
            ids, mask = self.tokenizer.encode_numpy(items[start : start + batch_size])
            out.append(self.text_session.run(None, {"input_ids": ids, "attention_mask": mask})[0])
        return np.concatenate(out).astype(np.float32)

    def similarity(self, audio_embeds: np.ndarray, text_embeds: np.ndarray) -> np.ndarray:
        """(N, M) cosine similarities."""
        return np.asarray(audio_embeds, np.float32) @ np.asarray(text_embeds, np.float32).T


def load(
    directory: str | os.PathLike, threads: int | None = None, providers: Sequence[str] | None = None
) -> OnnxClap:
    """Open an ONNX export directory (``openclap export onnx``) for inference without PyTorch."""
    return OnnxClap(directory, threads=threads, providers=providers)
