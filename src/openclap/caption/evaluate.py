"""Captioning evaluation: generate captions for a test set and score them (BLEU-1..4, ROUGE-L, CIDEr-D).

``evaluate_captioning(captioner, items)`` takes ``(path, references)`` pairs (AudioCaps / Clotho through
``openclap.eval.datasets``, or a manifest whose rows with the same path are several references) and
returns a ``CaptioningReport``. ``nearest_caption_baseline`` is the retrieval baseline: each test clip
gets the training caption whose clip has the nearest CLAP audio embedding.

``openclap eval captioning`` is wired by ``add_captioning_parser(eval_subparsers)``; its runner is
``run_captioning(args)``. SPICE / SPIDEr are not computed (SPICE needs Java plus Stanford CoreNLP models
that openclap cannot download); METEOR neither (no maintained offline implementation on PyPI).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

# Light imports only: `openclap eval`'s parser imports this module (torch is imported when a run starts).
from openclap.caption.metrics import CaptionScores, cider_d_per_item, score_captions

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from openclap.caption.generate import GenerationConfig
    from openclap.caption.rerank import Reranker

logger = logging.getLogger(__name__)


@dataclass
class CaptioningReport:
    """Scores plus every generated caption with its references."""

    scores: CaptionScores
    captions: list[dict] = field(default_factory=list)  # {"path", "caption", "references", "cider_d"}
    failed: list[str] = field(default_factory=list)  # inputs that could not be read
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "scores": self.scores.as_dict(),
            "captions": self.captions,
            "failed": self.failed,
            "notes": self.notes,
        }


NOTES = [
    "BLEU/ROUGE-L/CIDEr-D: openclap's implementation of the COCO caption definitions (openclap.caption.metrics)",
    "SPICE/SPIDEr not computed: SPICE needs Java and Stanford CoreNLP models, which openclap does not download",
    "METEOR not computed: no maintained offline implementation",
]


def report_from_captions(
    paths: Sequence[str], captions: Sequence[str], references: Sequence[Sequence[str]]
) -> CaptioningReport:
    """Score already generated captions."""
    scores = score_captions(captions, references)
    per = cider_d_per_item(captions, references)
    rows = [
        {"path": str(p), "caption": c, "references": list(r), "cider_d": round(s, 4)}
        for p, c, r, s in zip(paths, captions, references, per)
    ]
    return CaptioningReport(scores=scores, captions=rows, notes=list(NOTES))


def evaluate_captioning(
    captioner,
    items: Sequence[tuple[str, Sequence[str]]],
    generation: GenerationConfig | None = None,
    batch_size: int = 8,
    progress: bool = False,
    reranker: Reranker | None = None,
) -> CaptioningReport:
    """Caption every ``(path, references)`` item with ``captioner`` (a ``CaptionPipeline``, optionally with a
    ``reranker``) and score the captions; unreadable files are left out and listed in ``failed``."""
    if not items:
        raise ValueError("no items to evaluate")
    paths = [str(p) for p, _ in items]
    results = captioner.caption(
        paths,
        generation=generation,
        windows=False,
        batch_size=batch_size,
        progress=progress,
        on_error="skip",
        reranker=reranker,
    )
    keep = [i for i, r in enumerate(results) if r.ok]
    failed = [results[i].source for i in range(len(results)) if not results[i].ok]
    if not keep:
        raise ValueError(f"none of the {len(items)} files could be read; first error: {results[0].error}")
    report = report_from_captions(
        [paths[i] for i in keep], [results[i].caption or "" for i in keep], [list(items[i][1]) for i in keep]
    )
    report.failed = failed
    return report


def nearest_caption_baseline(
    train_embeds: np.ndarray, train_captions: Sequence[str], test_embeds: np.ndarray
) -> list[str]:
    """For each test embedding, the caption of the training clip with the highest cosine similarity."""
    import numpy as np

    a = np.asarray(train_embeds, np.float32)
    b = np.asarray(test_embeds, np.float32)
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    nearest = (b @ a.T).argmax(axis=1)
    return [train_captions[i] for i in nearest]


def items_from_dataset(dataset) -> list[tuple[str, list[str]]]:
    """``(path, captions)`` pairs of an ``openclap.eval.datasets.EvalDataset`` with captions."""
    items = [(str(it.path), list(it.captions)) for it in dataset.items if it.captions]
    if not items:
        raise ValueError(
            f"dataset {dataset.name!r} has no captions; captioning needs a caption dataset or manifest"
        )
    return items


# -------------------------------------------------------------------------------------- CLI wiring
def add_captioning_parser(eval_subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``openclap eval captioning`` under ``openclap eval``'s subparsers."""
    from openclap.cli import add_progress_argument  # light: argparse only
    from openclap.commands.caption import add_decoding_arguments

    p = eval_subparsers.add_parser(
        "captioning",
        help="caption a test set and score it (BLEU-1..4, ROUGE-L, CIDEr-D)",
        description="Generate captions for a caption dataset or manifest and score them against its references.",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--dataset", choices=["audiocaps", "clotho"], help="a caption dataset in its publisher's layout"
    )
    source.add_argument(
        "--manifest", help="CSV/JSONL with path and caption columns (rows with one path: several references)"
    )
    p.add_argument("--root", help="the dataset's folder (with --dataset)")
    p.add_argument("--split", default=None, help="split to evaluate (default: the dataset's test split)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="evaluate N evenly spaced items only")
    p.add_argument("--model", default="clapcap-2023", help="caption preset or caption model directory")
    p.add_argument("--checkpoint", default=None, help="weights (clapcap_weights_2023.pth or .safetensors)")
    p.add_argument("--tokenizer", default=None)
    p.add_argument("--device", default="cpu")
    add_decoding_arguments(p)  # --beam/--greedy/--sample, --rerank ... as `openclap caption`
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="write results.json (scores and every caption) and results.md (the scores table) into DIR",
    )
    add_progress_argument(p)
    p.set_defaults(func=run_captioning)
    return p


def run_captioning(args: argparse.Namespace) -> int:
    """Runner of ``openclap eval captioning``: exit 0, or 1 when some files could not be read."""
    import numpy as np

    from openclap.caption.pipeline import load_captioner
    from openclap.cli import UsageError, progress_enabled
    from openclap.commands.caption import decoding_from_args, reranker_from_args
    from openclap.eval.datasets import Manifest, load_dataset

    if args.dataset is not None:
        if args.root is None:
            raise UsageError(f"--dataset {args.dataset} needs --root PATH")
        dataset = load_dataset(args.dataset, args.root, args.split)
    else:
        # the caption column, even when the manifest also has a label column
        dataset = Manifest(label_column="caption").load(args.manifest, args.split)
    items = items_from_dataset(dataset)
    if args.limit is not None and args.limit < len(items):
        idx = np.linspace(0, len(items) - 1, args.limit).round().astype(int)
        items = [items[i] for i in sorted(set(idx.tolist()))]
    captioner = load_captioner(
        args.model,
        checkpoint=args.checkpoint,
        tokenizer=args.tokenizer,
        device=args.device,
    )
    report = evaluate_captioning(
        captioner,
        items,
        decoding_from_args(args, captioner),
        batch_size=args.batch_size,
        progress=progress_enabled(args),
        reranker=reranker_from_args(args),
    )
    payload = report.to_dict()
    payload["model"] = {"name": str(args.model), "checkpoint": args.checkpoint}
    if captioner.random_weights:  # asked for explicitly (a preset without weights): the scores mean nothing
        payload["model"]["random_weights"] = True
    s = report.scores
    line = (
        f"{dataset.name} ({len(items) - len(report.failed)} clips)  BLEU-1 {s.bleu_1:.3f}  BLEU-4 {s.bleu_4:.3f}  "
        f"ROUGE-L {s.rouge_l:.3f}  CIDEr-D {s.cider_d:.3f}  (SPICE/SPIDEr: not computed)"
    )
    if args.out:  # the same two files as every other `openclap eval` kind
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(payload, indent=1) + "\n")
        (out / "results.md").write_text(
            f"# Captioning: {dataset.name}\n\nModel: `{args.model}`"
            + (" (RANDOM weights)" if captioner.random_weights else "")
            + "\n\n| clips | BLEU-1 | BLEU-4 | ROUGE-L | CIDEr-D |\n|---|---|---|---|---|\n"
            f"| {len(items) - len(report.failed)} | {s.bleu_1:.3f} | {s.bleu_4:.3f} | {s.rouge_l:.3f} | "
            f"{s.cider_d:.3f} |\n"
        )
        print(f"openclap eval: wrote {out / 'results.json'}, {out / 'results.md'}", file=sys.stderr)
    if args.json:
        print(json.dumps(payload))
    else:
        print(line)
    for path in report.failed:
        print(f"openclap eval captioning: failed: {path}", file=sys.stderr)
    return 1 if report.failed else 0
