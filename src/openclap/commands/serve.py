"""`openclap serve`: the HTTP service (FastAPI + uvicorn) for embeddings, classification and search."""

from __future__ import annotations

import argparse
import os

from openclap.cli import EXIT_OK, UsageError, add_model_arguments

TOKEN_ENV = "OPENCLAP_TOKEN"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `openclap serve`."""
    parser = subparsers.add_parser(
        "serve",
        help="HTTP service: /embed/text, /embed/audio, /classify, /search and a search page at /",
        description="Serve a model (and optionally an index) over HTTP. Binds 127.0.0.1 unless --host says otherwise.",
    )
    parser.add_argument("--index", default=None, help="index directory for /search and the page at /")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument(
        "--token", default=None, help=f"require 'Authorization: Bearer TOKEN' (default: ${TOKEN_ENV} if set)"
    )
    parser.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="allow cross-origin requests from ORIGIN (repeatable; default: CORS off)",
    )
    parser.add_argument("--max-upload-mb", type=float, default=50.0, help="largest upload in MB (default 50)")
    parser.add_argument(
        "--max-duration", type=float, default=600.0, help="longest upload in seconds (default 600)"
    )
    parser.add_argument(
        "--max-batch", type=int, default=16, help="requests batched into one model call (default 16)"
    )
    parser.add_argument(
        "--batch-wait-ms",
        type=float,
        default=10.0,
        help="how long a request waits for companions (default 10)",
    )
    add_model_arguments(parser, speed_options=True)
    parser.set_defaults(model=None)
    for action in parser._actions:
        if action.dest == "model":
            action.help = "preset name or model directory (default: the index's model, else tiny)"
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the model (and index) and serve until interrupted."""
    import uvicorn

    import openclap
    from openclap.index import SearchIndex, load_pipeline_for
    from openclap.server import ServerSettings, create_app

    if not 0 <= args.port < 65536:
        raise UsageError(f"--port must be in 0..65535, got {args.port}")
    if args.max_upload_mb <= 0 or args.max_duration <= 0 or args.max_batch < 1:
        raise UsageError("--max-upload-mb and --max-duration must be > 0 and --max-batch >= 1")
    index = SearchIndex.load(args.index) if args.index else None
    if index is not None:
        pipeline = load_pipeline_for(index, args.model, args.checkpoint, args.tokenizer, args.device)
    else:
        pipeline = openclap.load(
            args.model or "tiny", checkpoint=args.checkpoint, tokenizer=args.tokenizer, device=args.device
        )
    pipeline.configure(dtype=args.dtype, compile=args.compile)
    settings = ServerSettings(
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        max_duration=args.max_duration,
        token=args.token or os.environ.get(TOKEN_ENV) or None,
        cors_origins=list(args.cors_origin),
        max_batch=args.max_batch,
        max_wait=args.batch_wait_ms / 1000.0,
    )
    app = create_app(pipeline, index, settings)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return EXIT_OK
