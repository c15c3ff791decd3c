"""Text-to-audio and audio-to-text retrieval on a captioned dataset (AudioCaps / Clotho protocol).

Every caption of every readable clip is a text query; every readable clip is an audio query. Clips
that cannot be read are excluded together with their captions (the report gives both counts).
Metrics and the tie rule are those of ``openclap.eval.metrics`` (pessimistic ties, chunked).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from openclap.eval import metrics
from openclap.eval.cache import EmbeddedFiles, EmbeddingCache, embed_dataset
from openclap.eval.datasets.base import RETRIEVAL, EvalDataset

HEATMAP_MAX_CLIPS = 64  # similarity heatmaps are kept (and plotted) for sets up to this size


@dataclass
class RetrievalEvalResult:
    """Both retrieval directions with bookkeeping; metric values are fractions."""

    dataset: str
    split: str | None
    num_items: int
    num_evaluated: int
    num_captions: int
    excluded: dict[str, object]
    text_to_audio: dict[str, float]
    audio_to_text: dict[str, float]
    timing: dict[str, float] = field(default_factory=dict)
    heatmap: np.ndarray | None = None  # (K, K): clip i vs first caption of clip j, small sets only
    heatmap_labels: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def metrics(self) -> dict[str, float]:
        """Flat view: 'text_to_audio/R@1', 'audio_to_text/mAP@10', ..."""
        out = {f"text_to_audio/{k}": v for k, v in self.text_to_audio.items()}
        out.update({f"audio_to_text/{k}": v for k, v in self.audio_to_text.items()})
        return out

    def as_dict(self) -> dict[str, object]:
        """JSON-ready result; field names are documented in docs/evaluation.md."""
        return {
            "kind": "retrieval",
            "dataset": self.dataset,
            "task": RETRIEVAL,
            "split": self.split,
            "num_items": self.num_items,
            "num_evaluated": self.num_evaluated,
            "num_captions": self.num_captions,
            "excluded": self.excluded,
            "metrics": {"text_to_audio": self.text_to_audio, "audio_to_text": self.audio_to_text},
            "timing": self.timing,
            "notes": self.notes,
        }


def retrieval(
    pipeline: object,
    dataset: EvalDataset,
    *,
    cache: EmbeddingCache | None = None,
    batch_size: int = 8,
    progress: bool = False,
    chunk_size: int | None = None,
    embedded: EmbeddedFiles | None = None,
) -> RetrievalEvalResult:
    """Retrieval evaluation of ``pipeline`` (a ``ClapPipeline``) on a captioned dataset."""
    if dataset.task != RETRIEVAL:
        raise ValueError(
            f"{dataset.name} is a {dataset.task} dataset without captions; use zero-shot, or a "
            "manifest with a 'caption' column"
        )
    start = time.perf_counter()
    embedded = embed_dataset(
        pipeline, dataset, embedded=embedded, cache=cache, batch_size=batch_size, progress=progress
    )
    captions: list[str] = []
    owner: list[int] = []
    for k, i in enumerate(embedded.ok):
        captions.extend(dataset.items[i].captions)
        owner.extend([k] * len(dataset.items[i].captions))
    text = pipeline.embed_text(captions, progress=progress)  # type: ignore[attr-defined]
    result = metrics.retrieval_metrics(
        embedded.embeddings,
        text,
        np.array(owner),
        chunk_size=chunk_size,
        device=getattr(pipeline, "device", "cpu"),  # ranks are computed where the model runs
    )
    heatmap, labels = None, []
    if len(embedded.ok) <= HEATMAP_MAX_CLIPS:
        first_caption = np.array([owner.index(k) for k in range(len(embedded.ok))])
        heatmap = embedded.embeddings @ text[first_caption].T
        labels = [dataset.items[i].key for i in embedded.ok]
    seconds = time.perf_counter() - start
    kept = set(embedded.ok.tolist())
    dropped = sum(len(item.captions) for i, item in enumerate(dataset.items) if i not in kept)
    excluded = embedded.excluded_report()
    excluded["captions"] = dropped
    return RetrievalEvalResult(
        dataset=dataset.name,
        split=dataset.split,
        num_items=len(dataset),
        num_evaluated=len(embedded.ok),
        num_captions=len(captions),
        excluded=excluded,
        text_to_audio=result.text_to_audio,
        audio_to_text=result.audio_to_text,
        timing={
            "seconds": seconds,
            "embedding_seconds": embedded.seconds,
            "clips_per_second": len(dataset) / seconds if seconds > 0 else float("inf"),
            "cached": embedded.cached,
            "computed": embedded.computed,
        },
        heatmap=heatmap,
        heatmap_labels=labels,
        notes=list(dataset.notes),
    )
