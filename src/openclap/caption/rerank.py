"""Reranking of decoded caption candidates (a decoding option: ``GenerationConfig(rerank=...)``).

Beam search returns ``beam_size`` candidates per clip ranked by the decoder's own log-probability. A
reranker re-orders them with a second opinion:

* ``"clap"`` (``ClapReranker``): the CLAP model whose audio tower the captioner reads scores every
  candidate by the cosine between the clip's audio embedding and the candidate's CLAP text embedding;
  the new ranking key is ``clap_cosine + rerank_lm_weight * mean_logprob`` (weight 0: CLAP alone).
  The text tower judges whether the caption names what CLAP hears (the digit, the class, the
  instrument), which the decoder's likelihood does not check.
* ``"consensus"`` (``NeighbourCaptions``): the captions of the clip's ``k`` nearest training clips in
  CLAP audio space vote: a candidate's score is its mean CIDEr-D against each of them (idf from the
  training captions), the consensus reranking of nearest-neighbour captioning (Devlin et al., 2015);
  key ``consensus + rerank_lm_weight * mean_logprob``.
* ``"clap+consensus"``: key ``clap_cosine + rerank_consensus_weight * consensus + rerank_lm_weight *
  mean_logprob``.

Candidates that decode to the same text are kept once (the better-ranked copy). The reranker never
changes the candidate set, only its order, so ``rerank`` with the CLAP-only key always returns a
candidate of maximal CLAP score among the beam's.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from openclap.caption.metrics import _cider_pair, _counts, _vector, tokenize

if TYPE_CHECKING:  # pragma: no cover
    from openclap.caption.generate import Hypothesis
    from openclap.pipeline import ClapPipeline

RERANKERS = ("clap", "consensus", "clap+consensus")

# A caption model directory written by the captioning trainer may carry the CLAP model it was built on here
# (so `--rerank clap` needs no extra argument).
CLAP_SUBDIR = "clap"
# ... and the training captions with their embeddings for consensus reranking here
NEIGHBOURS_FILE = "neighbours.npz"


class ClapReranker:
    """Scores captions for audio embeddings with a CLAP model's text tower (cosine in the joint space)."""

    def __init__(self, clap: ClapPipeline) -> None:
        self.clap = clap
        self._cache: dict[str, np.ndarray] = {}

    @classmethod
    def load(
        cls,
        name_or_dir: str | os.PathLike,
        checkpoint: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
    ) -> ClapReranker:
        """From a CLAP model directory (or a preset with ``checkpoint``); never downloads weights."""
        from openclap.pipeline import load

        return cls(load(name_or_dir, checkpoint=checkpoint, device=device, pretrained=False))

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


class NeighbourCaptions:
    """Training captions with their CLAP audio embeddings: the votes of consensus reranking.

    ``scores(audio_embeds, candidates)``: per clip, each candidate's mean CIDEr-D (n <= 4, Gaussian
    length penalty, clipped counts, x10; ``openclap.caption.metrics``) against the captions of the
    clip's ``k`` nearest training clips (cosine), with document frequencies over the training captions.
    """

    def __init__(self, embeds: np.ndarray, captions: Sequence[str], k: int = 5) -> None:
        e = np.asarray(embeds, np.float32)
        if e.ndim != 2 or len(e) != len(captions) or len(e) == 0:
            raise ValueError(f"need (N, D) embeddings for {len(captions)} captions, got {e.shape}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.embeds = e / np.linalg.norm(e, axis=1, keepdims=True)
        self.captions = list(captions)
        self.k = min(k, len(e))
        counts = [_counts(tokenize(c), 4) for c in dict.fromkeys(self.captions)]
        self._df: Counter = Counter()
        for c in counts:
            self._df.update(set(c))
        self._log_n = math.log(float(len(counts)))
        self._vectors: dict[str, tuple] = {}

    def neighbours(self, audio_embeds: np.ndarray, k: int | None = None) -> list[list[int]]:
        """Indices of the ``k`` (default: ``self.k``) nearest training clips of each row, nearest first."""
        return self._nearest(audio_embeds, k)[0]

    def _nearest(self, audio_embeds: np.ndarray, k: int | None) -> tuple[list[list[int]], np.ndarray]:
        k = self.k if k is None else k
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        k = min(k, len(self.embeds))
        a = np.asarray(audio_embeds, np.float32)
        a = a / np.linalg.norm(a, axis=1, keepdims=True)
        sims = a @ self.embeds.T  # (N, clips)
        idx = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        return idx.tolist(), np.take_along_axis(sims, idx, axis=1)

    def _tfidf(self, text: str) -> tuple:
        # the same training captions vote for many candidates: keep their tf-idf vectors (bounded)
        got = self._vectors.get(text)
        if got is None:
            if len(self._vectors) >= 200_000:
                self._vectors.clear()
            got = self._vectors[text] = _vector(_counts(tokenize(text), 4), self._df, self._log_n, 4)
        return got

    def cider(self, candidate: str, references: Sequence[str], weights: Sequence[float] | None = None) -> float:
        """Mean (or ``weights``-weighted mean) CIDEr-D of ``candidate`` against each of ``references``, with
        the training idf."""
        if weights is not None and len(weights) != len(references):
            raise ValueError(f"{len(weights)} weights for {len(references)} references")
        w = [1.0] * len(references) if weights is None else [float(x) for x in weights]
        vec_c = self._tfidf(candidate)
        total = sum(wj * _cider_pair(vec_c, self._tfidf(ref)) for wj, ref in zip(w, references))
        return 10.0 * total / 4 / max(sum(w), 1e-12)

    def scores(
        self,
        audio_embeds: np.ndarray,
        candidates: Sequence[Sequence[str]],
        k: int | None = None,
        tau: float | None = None,
    ) -> list[np.ndarray]:
        """Per row, the consensus score of each of its candidate captions: the mean CIDEr-D against the
        captions of the ``k`` nearest training clips, each voting with weight ``exp((cos - cos_1) / tau)``
        (``tau=None``: equal votes)."""
        if len(audio_embeds) != len(candidates):
            raise ValueError(f"{len(audio_embeds)} embeddings for {len(candidates)} candidate lists")
        if tau is not None and tau <= 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        out = []
        near, sims = self._nearest(audio_embeds, k)
        for row, idx, sim in zip(candidates, near, sims):
            refs = [self.captions[i] for i in idx]
            weights = None if tau is None else np.exp((sim.astype(np.float64) - sim[0]) / tau).tolist()
            out.append(np.array([self.cider(c, refs, weights) for c in row], np.float64))
        return out

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``neighbours.npz`` (embeddings, captions, k) into ``directory``."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        np.savez(
            out / NEIGHBOURS_FILE,
            embeds=self.embeds.astype(np.float32),
            captions=np.array(self.captions),
            k=np.array(self.k),
        )
        return out / NEIGHBOURS_FILE

    @classmethod
    def load(cls, path: str | os.PathLike) -> NeighbourCaptions:
        data = np.load(path, allow_pickle=False)
        return cls(data["embeds"], [str(c) for c in data["captions"]], int(data["k"]))


def rerank(
    candidates: Sequence[tuple[str, Hypothesis]],
    clap_scores: Sequence[float] | None,
    lm_weight: float = 0.0,
    consensus: Sequence[float] | None = None,
    consensus_weight: float = 1.0,
) -> list[tuple[str, Hypothesis]]:
    """Order ``(text, hypothesis)`` candidates by ``clap_score + consensus_weight * consensus +
    lm_weight * mean_logprob`` (a missing term counts 0; best first, ties keep the decoder's order);
    texts decoded twice are kept once. Sets each hypothesis' ``clap_score`` / ``consensus``."""
    n = len(candidates)
    if (clap_scores is not None and len(clap_scores) != n) or (consensus is not None and len(consensus) != n):
        raise ValueError(f"{n} candidates but a different number of scores")
    seen: set[str] = set()
    keep: list[tuple[float, int, str, Hypothesis]] = []
    for i, (text, hyp) in enumerate(candidates):
        if text in seen:
            continue
        seen.add(text)
        key = lm_weight * hyp.mean_logprob
        if clap_scores is not None:
            hyp.clap_score = float(clap_scores[i])
            key += hyp.clap_score
        if consensus is not None:
            hyp.consensus = float(consensus[i])
            key += consensus_weight * hyp.consensus
        keep.append((key, i, text, hyp))
    keep.sort(key=lambda x: (-x[0], x[1]))
    return [(text, hyp) for _, _, text, hyp in keep]


def bundled_neighbours(caption_dir: str | os.PathLike) -> Path | None:
    """The training captions stored inside a caption model directory (consensus reranking), if any."""
    path = Path(caption_dir) / NEIGHBOURS_FILE
    return path if path.is_file() else None


def bundled_clap(caption_dir: str | os.PathLike) -> Path | None:
    """The CLAP model directory stored inside a caption model directory, if any."""
    path = Path(caption_dir) / CLAP_SUBDIR
    return path if (path / "config.json").is_file() else None
