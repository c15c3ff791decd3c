"""`openclap embed`: audio embeddings of files, folders or manifests; resumable, sharded, mergeable.

openclap embed FILES_OR_DIR_OR_MANIFEST --out DIR        chunked output + manifest.json (resumable)
openclap embed FILES --out small.npz                      one .npz file (small jobs, not resumable)
openclap embed merge DIR1 DIR2 ... --out DIR              join the outputs of --shard runs
"""

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
    add_workers_argument,
    load_from_arguments,
    progress_enabled,
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `openclap embed`."""
    parser = subparsers.add_parser(
        "embed",
        help="audio embeddings of many files (resumable, sharded); `embed merge` joins shard outputs",
        description=(
            "Embed audio files, folders (recursive) or manifests (CSV/JSONL with a 'path' column, or .txt "
            "with one path a line) into --out DIR: chunks/*.npy + chunks/*.csv, errors.csv, manifest.json. "
            "Re-running skips files already embedded with the same model (same size and mtime). "
            "--out FILE.npz writes one file instead. `openclap embed merge DIR... --out DIR` merges outputs."
        ),
    )
    parser.add_argument(
        "inputs", nargs="+", metavar="FILES_OR_DIR_OR_MANIFEST", help="audio files, folders, manifests"
    )
    parser.add_argument("--out", required=True, help="output directory, or a .npz file for a small job")
    parser.add_argument(
        "--pool",
        choices=("mean", "max", "none"),
        default="mean",
        help="pool window embeddings per file (mean, max) or keep one row per window (none)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=16, help="audio windows per model call (default 16)"
    )
    add_workers_argument(parser)
    parser.add_argument(
        "--chunk-files", type=int, default=256, help="files per committed chunk (default 256)"
    )
    parser.add_argument(
        "--hop-seconds", type=float, default=None, help="window hop for long files (default: the model's)"
    )
    parser.add_argument(
        "--block-seconds", type=float, default=60.0, help="decoding block for long files (default 60)"
    )
    parser.add_argument(
        "--shard",
        default="0/1",
        help="i/n: embed only this shard of the files (default 0/1); auto: torchrun's $RANK/$WORLD_SIZE",
    )
    parser.add_argument(
        "--int8",
        action="store_true",
        help="CPU only: dynamic int8 Linear layers, per-channel weights, sensitive layers fp32 (see docs/inference.md)",
    )
    add_progress_argument(parser)
    add_model_arguments(parser, speed_options=True)
    parser.set_defaults(func=run)


def print_failures(command: str, report) -> None:
    """One stderr line per file of an ``EmbedReport``'s errors: "skipped: not audio: ..." or "failed: ..."."""
    from openclap.audio.io import is_not_audio

    for _, reason in report.errors:
        print(
            f"openclap {command}: {'skipped' if is_not_audio(reason) else 'failed'}: {reason}",
            file=sys.stderr,
        )


def exit_code(report) -> int:
    """1 when some audio failed (in this run, or in an earlier one whose output this is), or when
    nothing was embedded (now or before); else 0.

    Files that are not audio alone do not fail a run (a folder may hold notes and pictures beside its
    recordings): they are reported on stderr, in the summary line and in ``errors.csv``.
    """
    from openclap.audio.io import is_not_audio

    failed_earlier = any(not is_not_audio(reason) for _, reason in report.earlier_errors)
    ok = report.embedded + report.skipped - len(report.earlier_errors)
    return EXIT_FAILED_INPUTS if report.failed or failed_earlier or ok <= 0 else EXIT_OK


def model_reference(model: str) -> str:
    """How a job records its model: a preset name, or a model directory as an absolute path."""
    from pathlib import Path

    return str(Path(model).resolve()) if Path(model).exists() else str(model)


def run(args: argparse.Namespace) -> int:
    """Run the bulk job (or a merge); exit 1 when some files failed."""
    from openclap.audio.io import is_not_audio
    from openclap.bulk import (
        EmbedOptions,
        EmbedReport,
        count_failure,
        embed_to_arrays,
        parse_shard,
        run_embed_job,
        save_npz,
    )

    if args.batch_size < 1 or args.chunk_files < 1 or args.num_workers < 0:
        raise UsageError("--batch-size and --chunk-files must be >= 1 and --num-workers >= 0")
    progress = progress_enabled(args)
    options = EmbedOptions(
        pool=args.pool,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        chunk_files=args.chunk_files,
        hop_seconds=args.hop_seconds,
        block_seconds=args.block_seconds,
        shard=parse_shard(args.shard),
        progress=progress,
    )

    if args.int8 and (args.dtype != "float32" or args.compile):
        raise UsageError("--int8 is its own CPU speed path; use it without --dtype/--compile, or drop --int8")
    pipeline = load_from_arguments(args)
    if args.int8:
        if pipeline.device.type != "cpu":
            raise UsageError("--int8 is a CPU path; drop it or use --device cpu")
        from openclap.bulk.speed import quantize_int8

        pipeline.model = quantize_int8(pipeline.model, inplace=True)
    if args.out.endswith(".npz"):
        vectors, rows = embed_to_arrays(pipeline, args.inputs, options)
        if not rows:
            raise UsageError(f"no files found in {args.inputs}")
        save_npz(args.out, vectors, rows)
        report = EmbedReport(embedded=len({r.path for r in rows if r.status == "ok"}), rows=len(vectors))
        for r in rows:
            if r.status != "ok":
                count_failure(report, r.path, r.reason)
        print_failures("embed", report)
        print(f"{report.summary()} ({report.rows} row(s)) -> {args.out}")
        return exit_code(report)
    report = run_embed_job(
        pipeline,
        args.inputs,
        args.out,
        options,
        model_name=model_reference(args.model),
        checkpoint=model_reference(args.checkpoint) if args.checkpoint else None,
    )
    if report.total == 0:
        raise UsageError(f"no files found in {args.inputs} (shard {args.shard})")
    print_failures("embed", report)
    for path, reason in report.earlier_errors:
        what = "skipped" if is_not_audio(reason) else "failed"
        print(f"openclap embed: {what} (in an earlier run, skipped now): {reason}", file=sys.stderr)
    rate = report.embedded / report.seconds if report.seconds > 0 else 0.0
    print(
        json.dumps(
            {
                "out": args.out,
                "files": report.total,
                "embedded": report.embedded,
                "skipped": report.skipped,
                "failed": report.failed,
                "not_audio": report.not_audio,
                "failed_earlier": len(report.earlier_errors),
                "rows": report.rows,
                "seconds": round(report.seconds, 2),
                "files_per_second": round(rate, 2),
            }
        )
    )
    print(f"openclap embed: {report.summary()}", file=sys.stderr)  # the last line a terminal shows
    return exit_code(report)
