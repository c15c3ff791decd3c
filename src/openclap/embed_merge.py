"""`openclap embed merge DIR... --out DIR`: its own parser (the CLI picks it before the full parser, since
`merge` shares its position with `embed`'s inputs). Imports nothing of ``openclap.cli``, which imports it."""

from __future__ import annotations

import argparse


def build_merge_parser() -> argparse.ArgumentParser:
    """The parser of `openclap embed merge DIR... --out DIR` (its own usage and help)."""
    parser = argparse.ArgumentParser(
        prog="openclap embed merge",
        description="Join the output directories of `openclap embed --shard i/n` runs into one output directory.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="output directories of `openclap embed`")
    parser.add_argument("--out", required=True, help="merged output directory")
    parser.set_defaults(func=run_merge, command="embed merge", _parser=parser)
    return parser


def run_merge(args: argparse.Namespace) -> int:
    """Merge shard outputs into ``--out``."""
    from openclap.bulk import merge_outputs

    manifest = merge_outputs(args.dirs, args.out)
    print(
        f"merged {len(args.dirs)} output(s): {manifest['files']} file(s), {manifest['rows']} row(s), "
        f"{manifest['errors']} error(s) -> {args.out}"
    )
    return 0
