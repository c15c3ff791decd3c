"""`openclap index build|add|remove`: a search index over audio files or an `openclap embed` output."""

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

DEFAULT_THRESHOLD = 50_000  # keep equal to openclap.index.search_index.DEFAULT_THRESHOLD (not imported: slow)


def _model_args(parser: argparse.ArgumentParser, default: str | None) -> None:
    add_model_arguments(parser, speed_options=True)
    parser.set_defaults(model=default)
    for action in parser._actions:
        if action.dest == "model":
            action.help = "preset name or model directory (default: " + (
                f"{default})" if default else "the model that built the index)"
            )


def _embed_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--batch-size", type=int, default=16, help="audio windows per model call (default 16)"
    )
    add_workers_argument(parser)
    add_progress_argument(parser)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `openclap index` with its build/add/remove subcommands."""
    parser = subparsers.add_parser(
        "index",
        help="build or update a text-to-audio search index",
        description="Build a search index (exact below --threshold rows, FAISS IVF or HNSW above), add files, remove files.",
    )
    sub = parser.add_subparsers(dest="index_command", metavar="{build,add,remove}", required=True)

    build = sub.add_parser(
        "build", help="index audio files/folders/manifests, or an `openclap embed` output directory"
    )
    build.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="audio files, folders, manifests, or one embed output dir",
    )
    build.add_argument("--out", required=True, help="index directory to write")
    build.add_argument(
        "--pool",
        choices=("none", "mean", "max"),
        default="none",
        help="none (default): one row per window, so hits carry timestamps; mean/max: one per file",
    )
    build.add_argument("--hop-seconds", type=float, default=None, help="window hop (default: the model's)")
    build.add_argument(
        "--threshold",
        type=int,
        default=DEFAULT_THRESHOLD,
        help=f"rows from which an approximate FAISS index is used (default {DEFAULT_THRESHOLD})",
    )
    build.add_argument(
        "--approximate",
        choices=("auto", "ivf-sq8", "ivf", "hnsw"),  # openclap.index.search_index.APPROXIMATE_KINDS
        default="auto",
        help="FAISS index kind above the threshold: auto (default: chosen by size, see "
        "openclap.index.plan_index), ivf-sq8 (8-bit codes + exact re-scoring), ivf (float32 cells) or hnsw",
    )
    _embed_args(build)
    _model_args(build, "openclap-mini")
    build.set_defaults(func=run)

    add = sub.add_parser("add", help="embed new or changed files and add them to an index")
    add.add_argument("index", metavar="INDEX")
    add.add_argument("sources", nargs="+", metavar="FILES_OR_DIR")
    _embed_args(add)
    _model_args(add, None)
    add.set_defaults(func=run)

    remove = sub.add_parser(
        "remove", help="remove files (or folders) from an index; without paths: files that no longer exist"
    )
    remove.add_argument("index", metavar="INDEX")
    remove.add_argument("paths", nargs="*", metavar="PATH")
    remove.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Dispatch to build/add/remove."""
    from pathlib import Path

    from openclap.bulk import EmbedOptions
    from openclap.index import SearchIndex, add_files, build_index_from_embeddings, build_index_from_files
    from openclap.index.builder import is_embed_dir, load_pipeline_for

    progress = progress_enabled(args)
    if args.index_command == "remove":
        index = SearchIndex.load(args.index)
        if args.paths:
            removed = index.remove_paths([str(Path(p).resolve()) for p in args.paths])
        else:
            removed = index.remove_missing()
        index.save(args.index)
        print(
            json.dumps(
                {
                    "index": args.index,
                    "removed_rows": removed,
                    "rows": len(index),
                    "files": len(index.paths()),
                }
            )
        )
        return EXIT_OK
    if args.batch_size < 1 or args.num_workers < 0:
        raise UsageError("--batch-size must be >= 1 and --num-workers >= 0")
    if args.index_command == "build":
        if args.threshold < 1:
            raise UsageError(f"--threshold must be >= 1, got {args.threshold}")
        if len(args.sources) == 1 and is_embed_dir(args.sources[0]):
            index = build_index_from_embeddings(args.sources[0], args.out, args.threshold, args.approximate)
            print(
                json.dumps(
                    {"index": args.out, "rows": len(index), "files": len(index.paths()), "kind": index.kind}
                )
            )
            return EXIT_OK
        from openclap.commands.embed import model_reference

        pipeline = load_from_arguments(args)
        options = EmbedOptions(
            pool=args.pool,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            hop_seconds=args.hop_seconds,
            progress=progress,
        )
        index, report = build_index_from_files(
            pipeline,
            args.sources,
            args.out,
            options,
            args.threshold,
            approximate=args.approximate,
            model_name=model_reference(args.model),
            checkpoint=model_reference(args.checkpoint) if args.checkpoint else None,
        )
        if report.total == 0:
            raise UsageError(f"no files found in {args.sources}")
    else:
        index = SearchIndex.load(args.index)
        pipeline = load_pipeline_for(index, args.model, args.checkpoint, args.tokenizer, args.device)
        pipeline.configure(dtype=args.dtype, compile=args.compile)
        options = EmbedOptions(
            pool=index.info.get("pool", "none"),
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            hop_seconds=index.info.get("hop_seconds"),
            progress=progress,
        )
        index, report, added = add_files(args.index, pipeline, args.sources, options)
        print(f"added {added} row(s) to {args.index}", file=sys.stderr)
    from openclap.commands.embed import print_failures

    print_failures("index", report)
    print(
        json.dumps(
            {
                "index": getattr(args, "out", None) or args.index,
                "rows": len(index),
                "files": len(index.paths()),
                "kind": index.kind,
                "embedded": report.embedded,
                "skipped": report.skipped,
                "failed": report.failed,
                "not_audio": report.not_audio,
            }
        )
    )
    print(f"openclap index: {report.summary()}", file=sys.stderr)
    return EXIT_FAILED_INPUTS if report.failed else EXIT_OK
