"""`openclap caption`: describe audio files in words (msclap's clapcap, or a caption model trained here)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from openclap.cli import (
    EXIT_FAILED_INPUTS,
    EXIT_OK,
    DeprecatedAlias,
    UsageError,
    add_progress_argument,
    progress_enabled,
)

if TYPE_CHECKING:
    from openclap.caption.generate import GenerationConfig
    from openclap.caption.pipeline import CaptionPipeline
    from openclap.caption.rerank import ClapReranker


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `openclap caption`."""
    parser = subparsers.add_parser(
        "caption",
        help="generate captions for audio files (long recordings: one caption per window, with times)",
        description=(
            "Caption audio files with a captioning model: a caption preset (clapcap-2023 with "
            "--checkpoint clapcap_weights_2023.pth, else the hub cache) or a caption model directory. Folders "
            "are searched recursively. Recordings longer than the model's window also get a caption per window."
        ),
    )
    parser.add_argument("inputs", nargs="+", metavar="FILES_OR_DIR", help="audio files and/or folders")
    parser.add_argument(
        "--model",
        default="clapcap-2023",
        help="caption preset or caption model directory (default: clapcap-2023)",
    )
    parser.add_argument(
        "--checkpoint", default=None, help="weights: msclap's clapcap_weights_2023.pth or a .safetensors file"
    )
    parser.add_argument("--tokenizer", default=None, help="tokenizer directory (default: the model's own)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda (default: cpu)")
    add_decoding_arguments(parser)
    parser.add_argument(
        "--hop-seconds", type=float, default=None, metavar="SECONDS", help="window hop for long recordings"
    )
    parser.add_argument("--hop", dest="hop_seconds", type=float, action=DeprecatedAlias, new="--hop-seconds")
    parser.add_argument(
        "--no-windows", action="store_true", help="one caption per file, no per-window captions"
    )
    parser.add_argument("--batch-size", type=int, default=8, help="audio windows per model call")
    parser.add_argument("--json", action="store_true", help="one JSON object per file (JSON Lines) on stdout")
    add_progress_argument(parser)
    parser.set_defaults(func=run)


def add_decoding_arguments(parser: argparse.ArgumentParser) -> None:
    """The decoding options shared by `openclap caption` and `openclap eval captioning`."""
    decode = parser.add_mutually_exclusive_group()
    decode.add_argument(
        "--beam", type=int, default=5, metavar="K", help="beam search width (default 5, msclap's)"
    )
    decode.add_argument("--greedy", action="store_true", help="greedy decoding")
    decode.add_argument("--sample", action="store_true", help="sample (with --temperature, --top-p, --seed)")
    parser.add_argument(
        "--length-penalty", type=float, default=1.0, help="beam score = log p / length**this (default 1)"
    )
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (default 1: off)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument(
        "--max-length", type=int, default=None, help="most tokens per caption (default: the model's)"
    )
    parser.add_argument(
        "--num-samples",
        type=int,
        default=1,
        metavar="N",
        help="with --sample: draw N captions per input and keep the best (by --rerank, else by log p) "
        "(default 1)",
    )
    parser.add_argument(
        "--rerank",
        choices=["none", "clap"],
        default="none",
        help="re-order the candidates by the CLAP audio-text cosine of the captioner's own CLAP model "
        "(default: none)",
    )
    parser.add_argument(
        "--rerank-model",
        default=None,
        metavar="CLAP_DIR",
        help="CLAP model directory for --rerank clap (default: the caption model directory's clap/)",
    )
    parser.add_argument(
        "--rerank-lm-weight",
        type=float,
        default=0.0,
        help="rerank key += this x mean log-probability (default 0)",
    )


def decoding_from_args(args: argparse.Namespace, captioner: CaptionPipeline) -> GenerationConfig:
    """The ``GenerationConfig`` (the search) the decoding options ask for."""
    if args.beam < 1:
        raise UsageError(f"--beam must be >= 1, got {args.beam}")
    if args.num_samples != 1 and not args.sample:
        raise UsageError("--num-samples needs --sample")
    strategy = "greedy" if args.greedy else "sample" if args.sample else "beam"
    overrides = {
        "strategy": strategy,
        "beam_size": args.beam,
        "length_penalty": args.length_penalty,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "seed": args.seed,
        "num_samples": args.num_samples,
    }
    if args.max_length is not None:
        overrides["max_length"] = args.max_length
    try:
        return captioner.generation_config(**overrides)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def reranker_from_args(args: argparse.Namespace) -> ClapReranker | None:
    """The CLAP reranker ``--rerank clap`` asks for: ``--rerank-model``, else the caption model's ``clap/``."""
    from openclap.caption.rerank import ClapReranker, bundled_clap

    if args.rerank == "none":
        return None
    if args.rerank_lm_weight < 0:
        raise UsageError(f"--rerank-lm-weight must be >= 0, got {args.rerank_lm_weight}")
    source = args.rerank_model or bundled_clap(args.model)
    if source is None:
        raise UsageError(
            f"--rerank clap needs the captioner's CLAP model: {args.model} has no clap/ folder; "
            "pass --rerank-model CLAP_DIR"
        )
    return ClapReranker.load(source, device=args.device, lm_weight=args.rerank_lm_weight)


def _stamp(seconds: float) -> str:
    m, s = divmod(seconds, 60.0)
    return f"{int(m):02d}:{s:05.2f}"


def run(args: argparse.Namespace) -> int:
    """Caption every input; failed inputs are reported on stderr and make the exit code 1."""
    from openclap.caption.pipeline import load_captioner
    from openclap.pipeline import find_audio_files

    files = find_audio_files(args.inputs)
    if not files:
        raise UsageError(f"no audio files found in {args.inputs}")
    captioner = load_captioner(
        args.model,
        checkpoint=args.checkpoint,
        tokenizer=args.tokenizer,
        device=args.device,
    )
    generation = decoding_from_args(args, captioner)
    results = captioner.caption(
        files,
        generation=generation,
        windows=not args.no_windows,
        hop_seconds=args.hop_seconds,
        batch_size=args.batch_size,
        progress=progress_enabled(args),
        on_error="skip",
        reranker=reranker_from_args(args),
    )
    failed = 0
    for r in results:
        if r.error is not None:
            failed += 1
            print(f"openclap caption: failed: {r.error}", file=sys.stderr)
            if args.json:
                print(json.dumps({"path": r.source, "error": r.error}))
            continue
        if args.json:
            d = r.to_dict()
            d["path"] = d.pop("source")
            d.pop("error")
            if captioner.random_weights:  # asked for by name (clapcap-tiny): each result says so
                d["random_weights"] = True
            print(json.dumps(d))
            continue
        print(f"{r.source}\t{r.caption}")
        for w in r.windows:
            print(f"  [{_stamp(w.start)} - {_stamp(w.end)}]\t{w.caption}")
    if failed:
        print(f"openclap caption: {failed} of {len(results)} input(s) failed", file=sys.stderr)
        return EXIT_FAILED_INPUTS
    return EXIT_OK
