"""`openclap search`: the indexed sounds closest to a text query, or to an audio file (--audio)."""

from __future__ import annotations

import argparse
import json

from openclap.cli import EXIT_OK, UsageError, add_model_arguments


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `openclap search`."""
    parser = subparsers.add_parser(
        "search",
        help="search an index with a text query (or --audio FILE: more like this file)",
        description="Print the best-matching files (and window start/end seconds) of an `openclap index` directory.",
    )
    parser.add_argument("query", nargs="?", default=None, help='text query, e.g. "a dog barking in the rain"')
    parser.add_argument(
        "--audio", default=None, metavar="FILE", help="search with an audio file instead of text"
    )
    parser.add_argument("--index", required=True, help="index directory (from `openclap index build`)")
    parser.add_argument("--top-k", type=int, default=10, help="number of results (default 10)")
    parser.add_argument(
        "--all-windows", action="store_true", help="allow several windows of one file in the results"
    )
    parser.add_argument(
        "--json", action="store_true", help="JSON output: a list of {path, start, end, score, row}"
    )
    add_model_arguments(parser, speed_options=True)
    parser.set_defaults(model=None)
    for action in parser._actions:
        if action.dest == "model":
            action.help = "preset name or model directory (default: the model that built the index)"
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Embed the query, search, print the hits."""
    from pathlib import Path

    from openclap.index import SearchIndex, load_pipeline_for

    if (args.query is None) == (args.audio is None):
        raise UsageError(
            'give either a text query or --audio FILE, e.g. openclap search "rain" --index INDEX'
        )
    if args.top_k < 1:
        raise UsageError(f"--top-k must be >= 1, got {args.top_k}")
    index = SearchIndex.load(args.index)
    pipeline = load_pipeline_for(index, args.model, args.checkpoint, args.tokenizer, args.device)
    pipeline.configure(dtype=args.dtype, compile=args.compile)
    exclude: list[str] = []
    if args.audio is not None:
        query = pipeline.embed_audio([args.audio])[0]
        exclude = [str(Path(args.audio).resolve())]
    else:
        query = pipeline.embed_text([args.query])[0]
    hits = index.search(query, args.top_k, unique_files=not args.all_windows, exclude_paths=exclude)[0]
    if args.json:
        print(json.dumps([h.to_dict() for h in hits], indent=2))
    else:
        for h in hits:
            print(f"{h.score:.4f}\t{h.start:8.2f}-{h.end:8.2f} s\t{h.path}")
    return EXIT_OK
