"""The user-facing object: files and texts in, embeddings, similarities and labels out.

Inference is deterministic: a clip shorter than the model's window is padded (repeat or zero, per
config), a longer one is cut into overlapping windows (see ``openclap.audio.windows``) whose
embeddings are averaged and re-normalised. Nothing is random, so the same file gives the same vector.
"""

from __future__ import annotations

import logging
import os
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from openclap.audio.io import AudioLoadError, load_audio
from openclap.audio.windows import WindowSpan, split_windows
from openclap.config import ClapConfig
from openclap.factory import (
    TOKENIZER_DIR,
    has_random_weights,
    is_model_dir,
    load_model,
    resolve_config,
    resolve_source,
    save_model_dir,
)
from openclap.model import ClapModel
from openclap.text.cache import TextEmbeddingCache
from openclap.text.tokenizer import TextInputError, TextTokenizer

logger = logging.getLogger(__name__)


def fill_template(template: str, label: str) -> str:
    """``template`` with its one ``{}`` replaced by ``label``: plain substitution, never ``str.format``
    (a template may come from a user, and format specs like ``{:>10000000}`` cost memory)."""
    if template.count("{}") != 1:
        raise ValueError(
            f"template must contain '{{}}' exactly once, where the label goes; got {template[:80]!r}"
        )
    return template.replace("{}", label)


# An audio input: a path, or a waveform with its sample rate (a bare array needs sample_rate=).
AudioInput = str | os.PathLike | np.ndarray | torch.Tensor | tuple[Any, int]


@dataclass
class AudioEmbedding:
    """One input's result: the clip embedding, its windows, or the reason it failed."""

    source: str
    embedding: np.ndarray | None = None  # (D,) L2-normalised mean of the window embeddings
    window_embeddings: np.ndarray | None = None  # (W, D) each L2-normalised
    spans: list[WindowSpan] = field(default_factory=list)
    duration: float = 0.0  # seconds of real audio
    error: str | None = None
    # The loader's exception behind ``error``, re-raised as is so its type (e.g. FileNotFoundError) survives.
    exception: AudioLoadError | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class Classification:
    """Zero-shot result for one input: labels sorted by score, best first."""

    source: str
    labels: list[str]
    scores: list[float]  # softmax over all labels of scale * cosine
    error: str | None = None

    @property
    def label(self) -> str | None:
        return self.labels[0] if self.labels else None


def find_audio_files(
    inputs: Sequence[str | os.PathLike], exclude: Sequence[str | os.PathLike] = ()
) -> list[Path]:
    """Expand folders (recursively, sorted) into every file they hold; files are kept as given.

    Folders are not filtered by extension: the decoders decide by content (an M4A named ``.dat`` is
    audio, a ``.wav`` of random bytes is not), and a file that is not audio fails with
    ``AudioLoadError.kind == "not audio"``, so every file becomes a result or a reported failure.
    Files under a folder in ``exclude`` (a job's own output directory) are left out.
    """
    skip = [Path(e).resolve() for e in exclude]
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = (p for p in path.rglob("*") if p.is_file())
            found.extend(sorted(p for p in files if not any(p.resolve().is_relative_to(e) for e in skip)))
        else:
            found.append(path)
    return found


def _describe(item: AudioInput, index: int) -> str:
    if isinstance(item, (str, os.PathLike)):
        return str(item)
    return f"<input {index}>"


DEFAULT_TEMPLATE = "this is the sound of {}"  # the paper's prompt (Elizalde et al. 2023, ESC-50)
TEMPLATES_NAME = "templates.json"


class ClapPipeline:
    """A CLAP model with its tokenizer and clip policy: ``embed_audio``, ``embed_text``, ``classify``."""

    def __init__(
        self,
        model: ClapModel,
        tokenizer: TextTokenizer,
        device: str | torch.device = "cpu",
        dtype: str = "float32",
        compile: bool = False,
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self._text_cache = TextEmbeddingCache()  # prompts of classify/search, bounded
        # Prompt templates the model ships (its directory's templates.json: label set -> template, "default"
        # for label sets it has no entry for); classify(template=None) uses default_template.
        self.templates: dict[str, str] = {}
        # True when load() gave seeded random weights (asked for explicitly): outputs must say so.
        self.random_weights = False
        self.dtype = "float32"
        self.compiled = False
        self.configure(dtype=dtype, compile=compile)

    @property
    def default_template(self) -> str:
        """The model's own prompt for an arbitrary label set, else "this is the sound of {}" (the paper's)."""
        return self.templates.get("default", DEFAULT_TEMPLATE)

    def configure(self, dtype: str = "float32", compile: bool = False) -> ClapPipeline:
        """Run the encoders under autocast in ``dtype`` and/or through ``torch.compile``; returns ``self``.

        Embeddings stay float32 and L2-normalised, and the log-mel front end stays exact and eager (it
        turns autocast off inside). ``dtype`` is a numeric setting of the same model, not another model:
        the model fingerprint that bulk jobs and indexes check does not change with it. In float32,
        ``compile=True`` loads the encoders as AOTInductor packages from a per-model, per-machine cache,
        compiling them first when missing (minutes, once; ``openclap.compiled``); with ``dtype`` bfloat16 or
        float16 it wraps them in ``torch.compile`` (compiled on first use, in every process). Either way it
        cannot be undone (``compile=False`` leaves compiled encoders compiled).
        """
        self.model.autocast_dtype = _autocast_dtype(dtype, self.device)
        self.dtype = dtype
        if compile and not self.compiled:
            if dtype == "float32":  # compile once per model and machine (openclap.compiled)
                from openclap.compiled import compile_once

                compile_once(self.model, self.device)
            else:  # autocast graphs: torch.compile in this process (AOT packages are float32 graphs)
                _compile_forward(self.model.audio_encoder, "audio encoder")
                _compile_forward(self.model.text_encoder, "text encoder")
            self.compiled = True
        return self

    @property
    def config(self) -> ClapConfig:
        return self.model.config

    @property
    def sample_rate(self) -> int:
        return self.config.audio.sample_rate

    # ----------------------------------------------------------------------------------- audio
    def _load(self, item: AudioInput, sample_rate: int | None, index: int) -> np.ndarray:
        if isinstance(item, tuple):
            wave, rate = item
            return load_audio(wave, self.sample_rate, source_rate=rate)
        if isinstance(item, (np.ndarray, torch.Tensor)):
            if sample_rate is None:
                raise ValueError(
                    f"input {index} is an array: pass sample_rate=, or give (array, rate) tuples"
                )
            return load_audio(item, self.sample_rate, source_rate=sample_rate)
        return load_audio(item, self.sample_rate)

    def _windows(self, wave: np.ndarray, hop_seconds: float | None) -> tuple[torch.Tensor, list[WindowSpan]]:
        audio = self.config.audio
        hop = hop_seconds if hop_seconds is not None else audio.hop_seconds
        hop_samples = max(1, round(hop * self.sample_rate))
        return split_windows(
            torch.from_numpy(wave), audio.num_samples, hop_samples, audio.pad_mode, self.sample_rate
        )

    @torch.inference_mode()
    def _encode_windows(self, windows: torch.Tensor) -> np.ndarray:
        embeds = self.model.encode_audio(windows.to(self.device, torch.float32))
        return embeds.float().cpu().numpy()

    def iter_audio_embeddings(
        self,
        inputs: Sequence[AudioInput],
        *,
        sample_rate: int | None = None,
        batch_size: int = 8,
        hop_seconds: float | None = None,
        progress: bool = False,
    ) -> Iterator[AudioEmbedding]:
        """Embed inputs in order, yielding one result per input; unreadable audio is a failed result.

        ``batch_size`` counts windows: long clips fill several batch slots. Only ``AudioLoadError``
        (and bad arrays) become failed results; any other exception propagates.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        pending: list[tuple[AudioEmbedding, int]] = []  # results waiting for window embeddings
        chunks: list[torch.Tensor] = []
        queued = 0
        bar = tqdm(total=len(inputs), desc="embedding audio", unit="file", disable=not progress)

        def flush() -> Iterator[AudioEmbedding]:
            nonlocal chunks, pending, queued
            if chunks:
                windows = torch.cat(chunks)
                embeds = np.concatenate(
                    [
                        self._encode_windows(windows[i : i + batch_size])
                        for i in range(0, len(windows), batch_size)
                    ]
                )
            offset = 0
            for result, count in pending:
                if count:
                    result.window_embeddings = embeds[offset : offset + count]
                    mean = torch.from_numpy(result.window_embeddings.mean(axis=0))
                    result.embedding = F.normalize(mean, dim=-1).numpy()
                    offset += count
                bar.update(1)
                yield result
            pending, chunks, queued = [], [], 0

        for index, item in enumerate(inputs):
            result = AudioEmbedding(source=_describe(item, index))
            try:
                wave = self._load(item, sample_rate, index)
            except AudioLoadError as exc:
                result.error, result.exception = str(exc), exc
                pending.append((result, 0))
                continue
            windows, spans = self._windows(wave, hop_seconds)
            result.spans = spans
            result.duration = len(wave) / self.sample_rate
            pending.append((result, len(windows)))
            chunks.append(windows)
            queued += len(windows)
            if queued >= batch_size:
                yield from flush()
        yield from flush()
        bar.close()

    def embed_audio(
        self,
        inputs: AudioInput | Sequence[AudioInput],
        *,
        sample_rate: int | None = None,
        batch_size: int = 8,
        hop_seconds: float | None = None,
        progress: bool = False,
        return_windows: bool = False,
    ) -> np.ndarray | list[AudioEmbedding]:
        """(N, D) float32 L2-normalised embeddings; raises on the first unreadable input.

        With ``return_windows=True`` returns the per-input ``AudioEmbedding`` results instead,
        holding each window's embedding with its start/end seconds.
        """
        items = as_audio_list(inputs)
        if not items:
            raise ValueError("embed_audio got no inputs; pass at least one file or waveform")
        results = list(
            self.iter_audio_embeddings(
                items,
                sample_rate=sample_rate,
                batch_size=batch_size,
                hop_seconds=hop_seconds,
                progress=progress,
            )
        )
        for result in results:
            if result.error is not None:
                raise _load_error(result)
        if return_windows:
            return results
        return np.stack([r.embedding for r in results]).astype(np.float32)

    # ------------------------------------------------------------------------------------ text
    @torch.inference_mode()
    def embed_text(
        self, texts: str | Sequence[str], *, batch_size: int = 64, progress: bool = False
    ) -> np.ndarray:
        """(M, D) float32 L2-normalised text embeddings."""
        items = [texts] if isinstance(texts, str) else list(texts)
        if not items:
            raise TextInputError("embed_text got an empty list; pass at least one text")
        out = []
        for start in tqdm(range(0, len(items), batch_size), desc="embedding text", disable=not progress):
            tokens = self.tokenizer(items[start : start + batch_size])
            embeds = self.model.encode_text(
                tokens["input_ids"].to(self.device), tokens["attention_mask"].to(self.device)
            )
            out.append(embeds.float().cpu().numpy())
        return np.concatenate(out).astype(np.float32)

    def _cached_text(self, texts: list[str]) -> np.ndarray:
        got = self._text_cache.lookup(texts)
        missing = [t for t in dict.fromkeys(texts) if t not in got]
        if missing:
            got.update(zip(missing, self.embed_text(missing)))
        self._text_cache.store(got)
        return np.stack([got[t] for t in texts])

    # ---------------------------------------------------------------------------- similarities
    def similarity(self, audio_embeds: np.ndarray, text_embeds: np.ndarray) -> np.ndarray:
        """(N, M) cosine similarities of L2-normalised audio and text embeddings."""
        a, t = np.asarray(audio_embeds, np.float32), np.asarray(text_embeds, np.float32)
        if a.ndim != 2 or t.ndim != 2 or a.shape[1] != t.shape[1]:
            raise ValueError(f"need (N, D) and (M, D) embeddings with equal D, got {a.shape} and {t.shape}")
        return a @ t.T

    def classify(
        self,
        inputs: AudioInput | Sequence[AudioInput],
        labels: Sequence[str],
        *,
        template: str | None = None,
        top_k: int | None = None,
        sample_rate: int | None = None,
        batch_size: int = 8,
        progress: bool = False,
        on_error: str = "raise",
    ) -> list[Classification]:
        """Zero-shot classification: each input scored against ``fill_template(template, label)`` prompts.

        ``template=None`` uses the model's own prompt (``default_template``). ``on_error="skip"`` returns
        failed inputs as results with ``error`` set instead of raising.
        """
        template = self.default_template if template is None else template
        labels = list(labels)
        if not labels:
            raise ValueError("classify needs at least one label, e.g. labels=['dog', 'rain']")
        if len(set(labels)) != len(labels):
            raise ValueError(f"labels must be unique, got {labels}")
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        text = self._cached_text([fill_template(template, label) for label in labels])  # (L, D)
        k = len(labels) if top_k is None else max(1, min(top_k, len(labels)))
        scale = float(self.model.scale().detach())
        out = []
        items = as_audio_list(inputs)
        for result in self.iter_audio_embeddings(
            items, sample_rate=sample_rate, batch_size=batch_size, progress=progress
        ):
            if result.error is not None:
                if on_error == "raise":
                    raise _load_error(result)
                out.append(Classification(result.source, [], [], error=result.error))
                continue
            probs = torch.softmax(torch.from_numpy(scale * (text @ result.embedding)), dim=0).numpy()
            order = np.argsort(-probs, kind="stable")[:k]
            out.append(
                Classification(result.source, [labels[i] for i in order], [float(probs[i]) for i in order])
            )
        return out

    # ------------------------------------------------------------------------------------- i/o
    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write config.json, model.safetensors and the tokenizer: ``openclap.load(directory)`` reads it."""
        out = save_model_dir(self.model, directory)
        self.tokenizer.save_pretrained(out / TOKENIZER_DIR)
        if self.templates:
            import json

            (out / TEMPLATES_NAME).write_text(json.dumps(self.templates, indent=2) + "\n")
        return out


# dtype option -> autocast dtype (None: plain float32).
DTYPES: dict[str, torch.dtype | None] = {
    "float32": None,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def _autocast_dtype(dtype: str, device: torch.device) -> torch.dtype | None:
    """Validate the ``dtype`` option for ``device``; the dtype the encoders autocast to, or None."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if dtype != "float32" and device.type not in ("cpu", "cuda"):
        raise ValueError(
            f"dtype={dtype!r} runs on cpu (bfloat16) or cuda; on {device.type} use dtype='float32'"
        )
    if dtype == "float16" and device.type == "cpu":
        raise ValueError(
            "dtype='float16' is CUDA-only (CPU autocast computes in bfloat16); "
            "on CPU use dtype='bfloat16' (--dtype bfloat16) or 'float32'"
        )
    return DTYPES[dtype]


def _compile_forward(module: torch.nn.Module, name: str) -> None:
    """Replace ``module.forward`` by its ``torch.compile`` form; a compiler failure names the option.

    The wrapper is a method bound to ``module``, so a ``copy.deepcopy`` (``quantize_int8``) binds it
    to the copy and runs the copy's own weights (compiled anew), never the original's.
    """
    from torch._dynamo.exc import TorchDynamoException  # base of dynamo's and inductor's compile errors

    compiled = torch.compile(type(module).forward, dynamic=True)

    def forward(self: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        try:
            return compiled(self, *args, **kwargs)
        except TorchDynamoException as exc:  # compilation failed; not an input error
            raise RuntimeError(
                f"torch.compile failed on the {name} (openclap.load(compile=True), CLI --compile); "
                f"run without it, or fix the compiler setup: {type(exc).__name__}: {exc}"
            ) from exc

    module.forward = types.MethodType(forward, module)


def _load_error(result: AudioEmbedding) -> AudioLoadError:
    """The loader's own exception for a failed result (keeps AudioFileNotFoundError a FileNotFoundError)."""
    return (
        result.exception if result.exception is not None else AudioLoadError(result.error, path=result.source)
    )


def as_audio_list(inputs: AudioInput | Sequence[AudioInput]) -> list[AudioInput]:
    """One audio input (a path, an array, a tensor, an (array, rate) pair) or a sequence of them, as a list."""
    if isinstance(inputs, (str, os.PathLike, np.ndarray, torch.Tensor, tuple)):
        return [inputs]
    return list(inputs)


def load(
    name_or_dir: str | os.PathLike,
    checkpoint: str | os.PathLike | None = None,
    tokenizer: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    pretrained: bool = True,
    dtype: str = "float32",
    compile: bool = False,
    int8: bool = False,
) -> ClapPipeline:
    """Load a preset (optionally with a checkpoint) or a saved model directory, ready for inference.

    A preset with published weights and no ``checkpoint`` fetches them (hub cache first) unless
    ``pretrained=False``, which gives seeded random weights (tests, benchmarks, training from scratch).
    ``dtype`` ("float32", "bfloat16" on CPU or CUDA, "float16" on CUDA) runs the encoders under
    autocast; ``compile=True`` compiles them (float32: once per model and machine, ``openclap.compiled``).
    ``int8=True`` (CPU, float32, no compile) quantizes the Linear layers to int8 with per-channel weights, keeping the
    accuracy-sensitive ones in fp32 (``openclap.bulk.speed.quantize_int8``). See
    ``ClapPipeline.configure`` and docs/inference.md for speed and accuracy.
    """
    if int8 and (dtype != "float32" or compile or torch.device(device).type != "cpu"):
        raise ValueError(
            f"int8=True is its own CPU path: use it with device='cpu', dtype='float32' and compile=False "
            f"(got device={device!r}, dtype={dtype!r}, compile={compile})"
        )
    name_or_dir = resolve_source(name_or_dir)
    config = resolve_config(name_or_dir)
    if tokenizer is None and is_model_dir(name_or_dir) and (Path(name_or_dir) / TOKENIZER_DIR).is_dir():
        tokenizer = Path(name_or_dir) / TOKENIZER_DIR
    if (
        tokenizer is None
    ):  # not bundled nor a local directory: the hub cache (roberta-base, bert-base-uncased)
        from openclap.hub import TokenizerUnavailableError, resolve_tokenizer

        try:
            tokenizer = resolve_tokenizer(config.text)
        except TokenizerUnavailableError as exc:
            _raise_with_missing_weights(exc, name_or_dir, config, checkpoint, pretrained)
    text_tokenizer = TextTokenizer(config.text, tokenizer)
    model = load_model(name_or_dir, checkpoint=checkpoint, device=device, download=pretrained)
    if int8:
        from openclap.bulk.speed import quantize_int8

        model = quantize_int8(model, inplace=True)  # ours: no second fp32 copy at load
    pipeline = ClapPipeline(model, text_tokenizer, device=device, dtype=dtype, compile=compile)
    pipeline.random_weights = has_random_weights(name_or_dir, checkpoint, pretrained)
    if not isinstance(name_or_dir, ClapConfig) and (Path(name_or_dir) / TEMPLATES_NAME).is_file():
        pipeline.templates = read_templates_file(Path(name_or_dir) / TEMPLATES_NAME)
    return pipeline


def read_templates_file(path: str | os.PathLike) -> dict[str, str]:
    """A model's ``templates.json`` (label set -> prompt template with ``{}``); a bad entry is an error."""
    import json

    data = json.loads(Path(path).read_text())
    bad = {k: v for k, v in data.items() if not isinstance(v, str) or "{}" not in v}
    if not isinstance(data, dict) or bad:
        raise ValueError(f"{path}: every template must be a string with '{{}}' for the label; bad: {bad}")
    return dict(data)


def _raise_with_missing_weights(
    exc: Exception, name_or_dir: object, config: ClapConfig, checkpoint: object, pretrained: bool
) -> None:
    """Re-raise a missing-tokenizer error, listing the missing published weights too (one message)."""
    from openclap.hub import download_checkpoint
    from openclap.pretrained import get_bundle

    bundle = get_bundle(config.name)
    if checkpoint is None and pretrained and bundle is not None and not is_model_dir(str(name_or_dir)):
        try:
            download_checkpoint(bundle)
        except FileNotFoundError as weights_exc:
            raise type(exc)(f"{exc}\nAlso missing: {weights_exc}") from exc
    raise exc
