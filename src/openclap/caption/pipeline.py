"""Captioning from files: ``load_captioner(...).caption(files)``.

``CaptionPipeline`` wraps a ``ClapPipeline`` built on the caption model's audio tower, so audio loading,
padding and windowing are exactly those of CLAP inference (deterministic, no random crop). A recording
longer than one window gets a caption for the mean embedding of its windows and, with ``windows=True``,
one caption per window with its start/end in seconds.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer

from openclap.audio.io import AudioLoadError
from openclap.caption.config import CaptionConfig
from openclap.caption.factory import (
    TOKENIZER_DIR,
    caption_random_weights,
    is_caption_dir,
    load_caption_model,
    resolve_caption_config,
    save_caption_model,
)
from openclap.caption.generate import DecoderStepper, GenerationConfig, Hypothesis, generate
from openclap.caption.model import CaptionModel
from openclap.caption.rerank import Reranker
from openclap.config import TextConfig
from openclap.pipeline import AudioInput, ClapPipeline, as_audio_list
from openclap.text.tokenizer import TextTokenizer

logger = logging.getLogger(__name__)

_EOS_TEXT = "<|endoftext|>"


class CaptionTokenizer:
    """Captions <-> token ids for the decoder: ``__call__`` for teacher forcing, ``decode`` for output.

    A caption is tokenised as ``caption + text_suffix`` (msclap: `` <|endoftext|>``); generation stops at
    the first token of the suffix (msclap's ``tokenizer.encode(" <|endoftext|>")[0]``, the space token 220
    for GPT-2) or, without a suffix, at ``<|endoftext|>``.
    """

    def __init__(self, cfg: TextConfig, path: str | os.PathLike | None = None) -> None:
        self.cfg = cfg
        self.text = TextTokenizer(cfg, path)
        with tempfile.TemporaryDirectory() as tmp:  # the public way to get the underlying pipeline back
            self.text.save_pretrained(tmp)
            self._tok = Tokenizer.from_file(str(Path(tmp) / "tokenizer.json"))
        if cfg.text_suffix:
            ids = self._tok.encode(cfg.text_suffix, add_special_tokens=False).ids
        else:
            eos = self._tok.token_to_id(_EOS_TEXT)
            ids = [eos] if eos is not None else []
        if not ids:
            raise ValueError(
                f"cannot find a stop token: text_suffix is {cfg.text_suffix!r} and the tokenizer has no {_EOS_TEXT}"
            )
        self.stop_id = int(ids[0])
        self.suffix_ids = [int(i) for i in ids]

    @property
    def vocab_size(self) -> int:
        return self.text.vocab_size

    def __call__(self, captions: Sequence[str]) -> dict[str, torch.Tensor]:
        """Right-padded ``input_ids`` / ``attention_mask`` (B, L) of ``caption + text_suffix``."""
        return self.text(captions)

    def decode(self, ids: Sequence[int]) -> str:
        """Text of generated ids (the stop token and anything after it already removed by the search)."""
        text = self._tok.decode(list(ids), skip_special_tokens=False)
        return text.replace(_EOS_TEXT, " ").strip()

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write the tokenizer files (``CaptionTokenizer(cfg, directory)`` reloads it)."""
        return self.text.save_pretrained(directory)


@dataclass
class WindowCaption:
    """The caption of one window of a long recording."""

    start: float  # seconds
    end: float
    caption: str
    score: float  # mean log-probability per token
    clap_score: float | None = None  # audio-text cosine (with CLAP reranking)


@dataclass
class CaptionResult:
    """One input's caption(s), or why it failed."""

    source: str
    caption: str | None = None
    score: float | None = None  # mean log-probability per generated token (stop token included)
    clap_score: float | None = None  # CLAP audio-text cosine of the caption (with CLAP reranking)
    alternatives: list[tuple[str, float]] = field(default_factory=list)  # other beams, best first
    windows: list[WindowCaption] = field(default_factory=list)
    duration: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "caption": self.caption,
            "score": self.score,
            "clap_score": self.clap_score,
            "alternatives": [{"caption": c, "score": s} for c, s in self.alternatives],
            "windows": [w.__dict__ for w in self.windows],
            "duration": self.duration,
            "error": self.error,
        }


class CaptionPipeline:
    """A caption model with its tokenizer: ``caption(files)`` and ``caption_embeddings(embeds)``; both take
    an optional ``reranker`` (``openclap.caption.rerank.Reranker``, e.g. ``ClapReranker``)."""

    def __init__(
        self, model: CaptionModel, tokenizer: CaptionTokenizer, device: str | torch.device = "cpu"
    ) -> None:
        if tokenizer.vocab_size > model.vocab_size:
            raise ValueError(
                f"tokenizer has {tokenizer.vocab_size} tokens but the decoder only {model.vocab_size}; "
                "pass the tokenizer the model was trained with"
            )
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.random_weights = False  # set by load_captioner: seeded random weights, asked for explicitly
        # The audio side of CLAP inference, reused as is: CaptionModel has ClapModel's encode_audio.
        self.audio = ClapPipeline(model, tokenizer.text, device=self.device)  # type: ignore[arg-type]

    @property
    def config(self) -> CaptionConfig:
        return self.model.config

    def generation_config(self, **overrides) -> GenerationConfig:
        """Defaults: beam search of 5 (msclap), up to ``text.max_length`` tokens; ``overrides`` replace them."""
        base = GenerationConfig(max_length=self.config.text.max_length)
        return replace(base, **overrides)

    @torch.inference_mode()
    def caption_embeddings(
        self,
        audio_embeds: np.ndarray | torch.Tensor,
        generation: GenerationConfig | None = None,
        batch_size: int = 16,
        reranker: Reranker | None = None,
    ) -> list[list[tuple[str, Hypothesis]]]:
        """Caption (N, D) audio embeddings: per row, (caption, hypothesis) pairs, best first (by the
        search's score, or by ``reranker``)."""
        gen = generation or self.generation_config()
        embeds = torch.as_tensor(np.asarray(audio_embeds, dtype=np.float32))
        if embeds.ndim != 2:
            raise ValueError(f"audio_embeds must be (N, D), got shape {tuple(embeds.shape)}")
        check = getattr(reranker, "check_audio_tower", None)
        if check is not None:  # a CLAP reranker's cosine is meaningful only for its own audio tower
            check(self.model)
        out: list[list[tuple[str, Hypothesis]]] = []
        for start in range(0, len(embeds), batch_size):
            prefix = self.model.prefix(embeds[start : start + batch_size].to(self.device))  # (b, P, W)
            for hyps in generate(DecoderStepper(self.model.decoder), prefix, self.tokenizer.stop_id, gen):
                out.append([(self.tokenizer.decode(h.tokens), h) for h in hyps])
        if reranker is not None:
            out = reranker.rerank(embeds.numpy(), out)
        return out

    def caption(
        self,
        inputs: AudioInput | Sequence[AudioInput],
        *,
        generation: GenerationConfig | None = None,
        windows: bool = True,
        sample_rate: int | None = None,
        hop_seconds: float | None = None,
        batch_size: int = 8,
        progress: bool = False,
        on_error: str = "raise",
        reranker: Reranker | None = None,
    ) -> list[CaptionResult]:
        """Caption files or waveforms; long recordings also get per-window captions when ``windows``.

        ``on_error="skip"`` returns unreadable inputs as results with ``error`` set instead of raising.
        """
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        gen = generation or self.generation_config()
        results: list[CaptionResult] = []
        rows: list[np.ndarray] = []  # embeddings to caption, in order
        owners: list[tuple[int, int | None]] = []  # (result index, window index or None for the whole input)
        items = as_audio_list(inputs)
        for emb in self.audio.iter_audio_embeddings(
            items, sample_rate=sample_rate, batch_size=batch_size, hop_seconds=hop_seconds, progress=progress
        ):
            result = CaptionResult(source=emb.source, duration=emb.duration, error=emb.error)
            if emb.error is not None:
                if on_error == "raise":
                    raise AudioLoadError(emb.error, path=emb.source)
                results.append(result)
                continue
            index = len(results)
            results.append(result)
            rows.append(emb.embedding)
            owners.append((index, None))
            if windows and emb.window_embeddings is not None and len(emb.window_embeddings) > 1:
                for w, (vec, span) in enumerate(zip(emb.window_embeddings, emb.spans)):
                    rows.append(vec)
                    owners.append((index, w))
                    result.windows.append(WindowCaption(float(span.start), float(span.end), "", 0.0))
        if rows:
            captions = self.caption_embeddings(np.stack(rows), gen, reranker=reranker)
            for (index, w), hyps in zip(owners, captions):
                text, best = hyps[0]
                if w is None:
                    results[index].caption = text
                    results[index].score = best.mean_logprob
                    results[index].clap_score = best.clap_score
                    results[index].alternatives = [(t, h.mean_logprob) for t, h in hyps[1:]]
                else:
                    results[index].windows[w].caption = text
                    results[index].windows[w].score = best.mean_logprob
                    results[index].windows[w].clap_score = best.clap_score
        return results

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write caption_config.json, model.safetensors and tokenizer/: ``load_captioner(directory)`` reads it."""
        out = save_caption_model(self.model, directory)
        self.tokenizer.save_pretrained(out / TOKENIZER_DIR)
        return out


def load_captioner(
    name_or_dir: str | os.PathLike | CaptionConfig = "clapcap-2023",
    checkpoint: str | os.PathLike | None = None,
    tokenizer: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    pretrained: bool = True,
) -> CaptionPipeline:
    """A ready ``CaptionPipeline`` from a caption preset (+ checkpoint, e.g. msclap's
    ``clapcap_weights_2023.pth``) or a saved caption model directory (for CLAP reranking, a directory
    written by the captioning trainer carries its CLAP model in ``clap/``: ``rerank.bundled_clap``).
    A preset with published weights and no ``checkpoint`` reads them from the hub cache or fails naming the
    download; ``pretrained=False`` asks for seeded random weights (``random_weights`` is then True)."""
    config = resolve_caption_config(name_or_dir)
    own = None if isinstance(name_or_dir, CaptionConfig) else Path(name_or_dir) / TOKENIZER_DIR
    if tokenizer is None and own is not None and is_caption_dir(name_or_dir) and own.is_dir():
        tokenizer = own
    model = load_caption_model(name_or_dir, checkpoint=checkpoint, device=device, pretrained=pretrained)
    pipeline = CaptionPipeline(model, CaptionTokenizer(config.text, tokenizer), device=device)
    pipeline.random_weights = caption_random_weights(name_or_dir, checkpoint, pretrained)
    return pipeline
