"""`openclap classify`: zero-shot labels for audio files."""

from __future__ import annotations

import argparse
import json
import sys

from openclap.cli import (
    EXIT_FAILED_INPUTS,
    EXIT_OK,
    UsageError,
    add_model_arguments,
    add_progress_argument,
    load_from_arguments,
    progress_enabled,
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `openclap classify`."""
    parser = subparsers.add_parser(
        "classify",
        help="zero-shot classification of audio files against text labels",
        description="Score each audio file against prompts built from the labels; folders are searched recursively.",
    )
    parser.add_argument("inputs", nargs="+", metavar="FILES_OR_DIR", help="audio files and/or folders")
    parser.add_argument(
        "--labels", nargs="+", required=True, help="candidate labels, e.g. dog rain 'church bells'"
    )
    parser.add_argument(
        "--template",
        default=None,
        help="prompt with {} for the label (default: the model's own prompt from its templates.json, "
        "else 'this is the sound of {}')",
    )
    parser.add_argument("--top-k", type=int, default=3, help="labels to show per file (default 3)")
    parser.add_argument("--batch-size", type=int, default=8, help="audio windows per model call")
    parser.add_argument("--json", action="store_true", help="one JSON object per file (JSON Lines) on stdout")
    add_progress_argument(parser)
    add_model_arguments(parser, speed_options=True)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Classify every input; failed inputs are reported on stderr and make the exit code 1."""
    from openclap.audio.io import is_not_audio
    from openclap.pipeline import find_audio_files

    if args.top_k < 1:
        raise UsageError(f"--top-k must be >= 1, got {args.top_k}")
    files = find_audio_files(args.inputs)
    if not files:
        raise UsageError(f"no files found in {args.inputs}")
    model = load_from_arguments(args)
    results = model.classify(
        files,
        args.labels,
        template=args.template,
        top_k=args.top_k,
        batch_size=args.batch_size,
        progress=progress_enabled(args),
        on_error="skip",
    )
    failed = not_audio = 0
    for r in results:
        if r.error is not None:
            skip = is_not_audio(r.error)
            not_audio, failed = not_audio + skip, failed + (not skip)
            print(f"openclap classify: {'skipped' if skip else 'failed'}: {r.error}", file=sys.stderr)
            if args.json:
                print(json.dumps({"path": r.source, "error": r.error}))
            continue
        if args.json:
            row = {"path": r.source, "labels": r.labels, "scores": [round(s, 6) for s in r.scores]}
            if model.random_weights:  # asked for by name (e.g. --model tiny): each result says so
                row["random_weights"] = True
            print(json.dumps(row))
        else:
            best = "  ".join(f"{label} {score:.3f}" for label, score in zip(r.labels, r.scores))
            print(f"{r.source}\t{best}")
    done = len(results) - failed - not_audio
    print(f"openclap classify: classified {done}, failed {failed}, not audio {not_audio}", file=sys.stderr)
    return EXIT_FAILED_INPUTS if failed or not done else EXIT_OK
