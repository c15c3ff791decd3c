"""`openclap serve`: the HTTP service (FastAPI + uvicorn) for embeddings, classification and search."""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
import sys

from openclap.cli import EXIT_OK, UsageError, add_model_arguments

TOKEN_ENV = "OPENCLAP_TOKEN"
WILDCARD_HOSTS = ("0.0.0.0", "::", "")


def _positive(kind: type):
    """argparse type: a positive, finite ``kind`` (``--max-duration nan`` must not switch limits off)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}") from None
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
        return value

    parse.__name__ = f"positive {kind.__name__}"
    return parse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `openclap serve`."""
    parser = subparsers.add_parser(
        "serve",
        help="HTTP service: /embed/text, /embed/audio, /classify, /search and a search page at /",
        description=(
            "Serve a model (and optionally an index) over HTTP. Binds 127.0.0.1 unless --host says otherwise. "
            "See 'Running the service safely' in docs/inference.md for the limits and what a proxy must add."
        ),
    )
    parser.add_argument("--index", default=None, help="index directory for /search and the page at /")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument(
        "--token-file",
        default=None,
        metavar="PATH",
        help=f"require 'Authorization: Bearer TOKEN', TOKEN read from PATH (default: ${TOKEN_ENV} if set)",
    )
    parser.add_argument(
        "--token",
        default=None,
        help=f"the token itself (visible to other users in `ps`: prefer ${TOKEN_ENV} or --token-file)",
    )
    parser.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also accept requests whose Host header is NAME (repeatable; loopback names and --host are "
        "always accepted; '*' accepts any, which re-opens DNS rebinding)",
    )
    parser.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="allow cross-origin requests from ORIGIN (repeatable; default: CORS off)",
    )
    parser.add_argument(
        "--max-upload-mb", type=_positive(float), default=50.0, help="largest upload in MB (default 50)"
    )
    parser.add_argument(
        "--max-duration", type=_positive(float), default=600.0, help="longest upload in seconds (default 600)"
    )
    parser.add_argument(
        "--max-samples",
        type=_positive(int),
        default=600 * 48_000 * 2,
        help="most frames x channels an upload's header may announce (default 57,600,000: 600 s of 48 kHz stereo)",
    )
    parser.add_argument(
        "--max-batch",
        type=_positive(int),
        default=16,
        help="requests batched into one model call (default 16)",
    )
    parser.add_argument(
        "--batch-wait-ms",
        type=_positive(float),
        default=10.0,
        help="how long a request waits for companions (default 10)",
    )
    parser.add_argument(
        "--read-timeout",
        type=_positive(float),
        default=30.0,
        help="seconds for a request's headers and body to arrive, else the connection closes (default 30)",
    )
    parser.add_argument(
        "--max-connections",
        type=_positive(int),
        default=64,
        help="open connections and running requests; more get 503 (default 64)",
    )
    add_model_arguments(parser, speed_options=True)
    parser.set_defaults(model=None)
    for action in parser._actions:
        if action.dest == "model":
            action.help = "preset name or model directory (default: the index's model, else openclap-mini)"
    parser.set_defaults(func=run)


def resolve_token(args: argparse.Namespace) -> str | None:
    """The token from --token-file, --token or $OPENCLAP_TOKEN (in that order); an empty one is an error."""
    if args.token_file is not None and args.token is not None:
        raise UsageError("give --token-file or --token, not both")
    if args.token_file is not None:
        try:
            with open(args.token_file, encoding="utf-8") as f:
                token, source = f.read().strip(), f"--token-file {args.token_file}"
        except OSError as exc:
            raise UsageError(f"cannot read --token-file {args.token_file}: {exc.strerror}") from None
    elif args.token is not None:
        token, source = args.token, "--token"
        print(
            f"warning: --token is visible to other users of this machine (ps); prefer ${TOKEN_ENV} or --token-file",
            file=sys.stderr,
        )
    elif TOKEN_ENV in os.environ:
        token, source = os.environ[TOKEN_ENV], f"${TOKEN_ENV}"
    else:
        return None
    if not token.strip():
        raise UsageError(f"the token from {source} is empty; an empty token would switch authentication off")
    return token.strip()


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost'."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allowed_hosts(host: str, extra: list[str]) -> list[str]:
    """Host-header names to accept: loopback names, the bound address (unless a wildcard), ``extra``."""
    from openclap.server.app import LOOPBACK_HOSTS

    names = [*LOOPBACK_HOSTS]
    if host not in WILDCARD_HOSTS:
        names.append(host)
    names += extra
    return list(dict.fromkeys(n.strip("[]").lower() for n in names))


def load_served(args: argparse.Namespace) -> tuple[object, object]:
    """The index (or None) and the pipeline `openclap serve` serves: --model, else the index's model, else the
    bundled openclap-mini (trained; never random weights unless a random preset is named)."""
    import openclap
    from openclap.index import SearchIndex, load_pipeline_for

    index = SearchIndex.load(args.index) if args.index else None
    if index is not None:
        pipeline = load_pipeline_for(index, args.model, args.checkpoint, args.tokenizer, args.device)
    else:
        pipeline = openclap.load(
            args.model or "openclap-mini",
            checkpoint=args.checkpoint,
            tokenizer=args.tokenizer,
            device=args.device,
        )
    pipeline.configure(dtype=args.dtype, compile=args.compile)
    return index, pipeline


def run(args: argparse.Namespace) -> int:
    """Load the model (and index) and serve until interrupted."""
    import uvicorn

    from openclap.server import ServerSettings, create_app, uvicorn_config

    if not 0 <= args.port < 65536:
        raise UsageError(f"--port must be in 0..65535, got {args.port}")
    token = resolve_token(args)
    if not is_loopback(args.host):
        if token is None:
            print(
                f"warning: serving on {args.host!r} without a token: anyone who can reach this address can use "
                f"the service and read the indexed audio; set ${TOKEN_ENV} or --token-file",
                file=sys.stderr,
            )
        if args.host in WILDCARD_HOSTS and not args.allowed_host:
            print(
                "warning: bound to every address, but only loopback Host names are accepted; add the names "
                "clients use with --allowed-host",
                file=sys.stderr,
            )
    index, pipeline = load_served(args)
    settings = ServerSettings(
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        max_duration=args.max_duration,
        max_decoded_samples=args.max_samples,
        token=token,
        allowed_hosts=allowed_hosts(args.host, args.allowed_host),
        cors_origins=list(args.cors_origin),
        max_batch=args.max_batch,
        max_wait=args.batch_wait_ms / 1000.0,
        read_timeout=args.read_timeout,
        max_connections=args.max_connections,
    )
    app = create_app(pipeline, index, settings)
    uvicorn.Server(uvicorn_config(app, args.host, args.port, settings)).run()
    return EXIT_OK
