"""Reranking of decoded caption candidates: a step after the search, passed to ``caption(..., reranker=)``.

Beam search (or sampling with ``num_samples``) returns candidates per clip ranked by the decoder's own
log-probability. A ``Reranker`` re-orders them with a second opinion. The built-in one, ``ClapReranker``,
is the CLAP model whose audio tower the captioner reads: it scores every candidate by the cosine between
the clip's audio embedding and the candidate's CLAP text embedding; the ranking key is
``clap_cosine + lm_weight * mean_logprob`` (weight 0: CLAP alone). The text tower judges whether the caption
names what CLAP hears (the digit, the class, the instrument), which the decoder's likelihood does not check.

Candidates that decode to the same text are kept once (the better-ranked copy). Reranking never changes the
candidate set, only its order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

if TYPE_CHECKING:  # pragma: no cover
    from openclap.caption.generate import Hypothesis
    from openclap.pipeline import ClapPipeline

# A caption model directory written by the captioning trainer may carry the CLAP model it was built on here
# (so `openclap caption --rerank clap` needs no extra argument).
CLAP_SUBDIR = "clap"


class Reranker(Protocol):
    """Re-orders each row's ``(caption, hypothesis)`` candidates, given the rows' (N, D) audio embeddings."""

    def rerank(
        self, audio_embeds: np.ndarray, candidates: Sequence[Sequence[tuple[str, Hypothesis]]]
    ) -> list[list[tuple[str, Hypothesis]]]:
        """Per row, its candidates best first."""


class ClapReranker:
    """Scores captions for audio embeddings with a CLAP model's text tower (cosine in the joint space)."""

    def __init__(self, clap: ClapPipeline, lm_weight: float = 0.0) -> None:
        if lm_weight < 0:
            raise ValueError(f"lm_weight must be >= 0, got {lm_weight}")
        self.clap, self.lm_weight = clap, lm_weight
        self._cache: dict[str, np.ndarray] = {}

    @classmethod
    def load(
        cls,
        name_or_dir: str | os.PathLike,
        checkpoint: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
        lm_weight: float = 0.0,
    ) -> ClapReranker:
        """From a CLAP model directory (or a preset with ``checkpoint``); never downloads weights."""
        from openclap.pipeline import load

        return cls(load(name_or_dir, checkpoint=checkpoint, device=device, pretrained=False), lm_weight)

    def check_audio_tower(self, caption_model: torch.nn.Module) -> None:
        """Raise ``ValueError`` unless the captioner's audio tower is this CLAP model's (same weights): the
        cosine is only meaningful for embeddings from the CLAP model's own audio tower."""
        mine = self.clap.model.state_dict()
        theirs = caption_model.state_dict()
        keys = [k for k in mine if k.startswith(("audio_encoder.", "audio_projection."))]
        bad = [
            k
            for k in keys
            if k not in theirs
            or theirs[k].shape != mine[k].shape
            or not torch.equal(theirs[k].cpu(), mine[k].cpu())
        ]
        if not keys or bad:
            raise ValueError(
                "the reranking CLAP model must be the one whose audio tower the captioner uses "
                f"(differing audio tensors: {bad[:3] or 'no audio tower'}); pass the CLAP model the "
                "caption model was trained on"
            )

    def text_embeddings(self, texts: Sequence[str]) -> np.ndarray:
        """(M, D) L2-normalised CLAP text embeddings (cached per text)."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            for text, vec in zip(missing, self.clap.embed_text(missing)):
                self._cache[text] = vec
        return np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, 0), np.float32)

    def scores(self, audio_embeds: np.ndarray, candidates: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Per row of ``audio_embeds`` (N, D), the cosine of each of its candidate captions."""
        a = np.asarray(audio_embeds, np.float32)
        if a.ndim != 2 or len(a) != len(candidates):
            raise ValueError(f"need (N, D) audio embeddings for {len(candidates)} rows, got {a.shape}")
        a = a / np.linalg.norm(a, axis=1, keepdims=True)
        flat = [t for row in candidates for t in row]
        text = self.text_embeddings(flat) if flat else np.zeros((0, a.shape[1]), np.float32)
        out, start = [], 0
        for row, vec in zip(candidates, a):
            out.append(text[start : start + len(row)] @ vec)
            start += len(row)
        return out

    def rerank(
        self, audio_embeds: np.ndarray, candidates: Sequence[Sequence[tuple[str, Hypothesis]]]
    ) -> list[list[tuple[str, Hypothesis]]]:
        """Each row's candidates ordered by ``cosine + lm_weight * mean_logprob`` (``Reranker`` protocol)."""
        scores = self.scores(audio_embeds, [[t for t, _ in row] for row in candidates])
        return [rerank(row, s, self.lm_weight) for row, s in zip(candidates, scores)]


def rerank(
    candidates: Sequence[tuple[str, Hypothesis]], clap_scores: Sequence[float], lm_weight: float = 0.0
) -> list[tuple[str, Hypothesis]]:
    """Order ``(text, hypothesis)`` candidates by ``clap_score + lm_weight * mean_logprob`` (best first, ties
    keep the decoder's order); texts decoded twice are kept once. Sets each hypothesis' ``clap_score``."""
    if len(clap_scores) != len(candidates):
        raise ValueError(f"{len(candidates)} candidates but {len(clap_scores)} scores")
    seen: set[str] = set()
    keep: list[tuple[float, int, str, Hypothesis]] = []
    for i, (text, hyp) in enumerate(candidates):
        if text in seen:
            continue
        seen.add(text)
        hyp.clap_score = float(clap_scores[i])
        keep.append((hyp.clap_score + lm_weight * hyp.mean_logprob, i, text, hyp))
    keep.sort(key=lambda x: (-x[0], x[1]))
    return [(text, hyp) for _, _, text, hyp in keep]


def bundled_clap(caption_dir: str | os.PathLike) -> Path | None:
    """The CLAP model directory stored inside a caption model directory, if any."""
    path = Path(caption_dir) / CLAP_SUBDIR
    return path if (path / "config.json").is_file() else None
