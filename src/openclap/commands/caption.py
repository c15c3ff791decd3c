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
        "--rerank",
        choices=["none", "clap", "consensus", "clap+consensus"],
        default="none",
        help="re-order the beam's candidates: clap = by the CLAP audio-text cosine of the captioner's own "
        "CLAP model; consensus = by agreement (CIDEr-D) with the captions of the nearest training clips "
        "(the model directory's neighbours.npz); clap+consensus = both (default: none)",
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
    parser.add_argument(
        "--num-samples",
        type=int,
        default=1,
        metavar="N",
        help="with --sample: draw N captions per input and keep the best (by --rerank, else by log p) "
        "(default 1)",
    )
    parser.add_argument(
        "--rerank-k",
        type=int,
        default=None,
        metavar="K",
        help="consensus: the captions of the K nearest training clips vote (default: the model's, 5)",
    )
    parser.add_argument(
        "--rerank-tau",
        type=float,
        default=None,
        help="consensus: weight each vote by exp(cosine / TAU) (default: equal votes)",
    )
    parser.add_argument(
        "--rerank-pool",
        choices=["beam", "beam+neighbours"],
        default="beam",
        help="what --rerank orders: the beam's captions, or also the captions of the --rerank-k nearest "
        "training clips (retrieval-augmented; needs neighbours.npz) (default: beam)",
    )
    parser.add_argument(
        "--rerank-consensus-weight",
        type=float,
        default=1.0,
        help="--rerank clap+consensus key = cosine + this x consensus (default 1)",
    )


def decoding_from_args(args: argparse.Namespace, captioner: CaptionPipeline) -> GenerationConfig:
    """The ``GenerationConfig`` the decoding options ask for, checked against what ``captioner`` carries."""
    if args.beam < 1:
        raise UsageError(f"--beam must be >= 1, got {args.beam}")
    if args.rerank_lm_weight < 0 or args.rerank_consensus_weight < 0:
        raise UsageError("--rerank-lm-weight and --rerank-consensus-weight must be >= 0")
    if args.num_samples != 1 and not args.sample:
        raise UsageError("--num-samples needs --sample")
    rerank = None if args.rerank == "none" else args.rerank
    if rerank is not None and "clap" in rerank and captioner.reranker is None:
        raise UsageError(
            f"--rerank {rerank} needs the captioner's CLAP model: {args.model} has no clap/ folder; "
            "pass --rerank-model CLAP_DIR"
        )
    if args.rerank_pool != "beam" and rerank is None:
        raise UsageError("--rerank-pool beam+neighbours needs --rerank")
    needs_memory = rerank is not None and ("consensus" in rerank or args.rerank_pool != "beam")
    if needs_memory and captioner.neighbours is None:
        raise UsageError(
            f"--rerank {rerank} needs the training captions: {args.model} has no neighbours.npz "
            "(written by the captioning trainer)"
        )
    strategy = "greedy" if args.greedy else "sample" if args.sample else "beam"
    overrides = {
        "strategy": strategy,
        "beam_size": args.beam,
        "length_penalty": args.length_penalty,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "seed": args.seed,
        "num_samples": args.num_samples,
        "rerank": rerank,
        "rerank_lm_weight": args.rerank_lm_weight,
        "rerank_consensus_weight": args.rerank_consensus_weight,
        "rerank_k": args.rerank_k,
        "rerank_tau": args.rerank_tau,
        "rerank_pool": args.rerank_pool,
    }
    if args.max_length is not None:
        overrides["max_length"] = args.max_length
    try:
        return captioner.generation_config(**overrides)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


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
        rerank_model=args.rerank_model,
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
            print(json.dumps(d))
            continue
        print(f"{r.source}\t{r.caption}")
        for w in r.windows:
            print(f"  [{_stamp(w.start)} - {_stamp(w.end)}]\t{w.caption}")
    if failed:
        print(f"openclap caption: {failed} of {len(results)} input(s) failed", file=sys.stderr)
        return EXIT_FAILED_INPUTS
    return EXIT_OK
