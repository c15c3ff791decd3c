"""The ``openclap`` command. Each subcommand lives in ``openclap.commands.<name>``.

A command module defines ``add_parser(subparsers)``, which registers its parser and sets
``func=run``; ``run(args) -> int`` returns the exit code (0 ok, 1 some input failed, 2 usage).
Heavy imports happen inside ``run`` so that ``openclap --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from openclap import __version__

# Order is the order of `openclap --help`.
COMMAND_MODULES = (
    "openclap.commands.models",
    "openclap.commands.classify",
    "openclap.commands.embed",
    "openclap.commands.index",
    "openclap.commands.search",
    "openclap.commands.serve",
    "openclap.commands.convert",
    "openclap.commands.caption",
    "openclap.commands.eval",
    "openclap.commands.train",
    "openclap.commands.tokenizer",
    "openclap.commands.pretrain_audio",
    "openclap.commands.demo",
    "openclap.commands.export",
)

EXIT_OK, EXIT_FAILED_INPUTS, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad command-line usage detected after parsing; reported with exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every available subcommand."""
    parser = argparse.ArgumentParser(prog="openclap", description="Contrastive Language-Audio Pretraining.")
    parser.add_argument("--version", action="version", version=f"openclap {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(subparsers)
    return parser


def add_model_arguments(
    parser: argparse.ArgumentParser, default_model: str = "openclap-mini", speed_options: bool = False
) -> None:
    """The --model / --checkpoint / --device options (and --dtype / --compile with ``speed_options``)."""
    parser.add_argument("--model", default=default_model, help=f"preset name or model directory (default: {default_model})")
    parser.add_argument("--checkpoint", default=None, help="weights file for the preset (msclap .pth, LAION .pt, safetensors)")
    parser.add_argument("--tokenizer", default=None, help="tokenizer directory (default: the model's own)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1 (default: cpu)")
    if speed_options:  # only for commands that pass them on to openclap.load / ClapPipeline.configure
        parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32",
                            help="encoder precision via autocast: bfloat16 (CPU or CUDA), float16 (CUDA only); "
                            "embeddings stay float32 (default: float32)")
        parser.add_argument("--compile", action="store_true",
                            help="torch.compile the audio and text encoders (compiled on first use: slow start)")


def add_recipe_arguments(parser: argparse.ArgumentParser, example: str) -> None:
    """The arguments of every recipe-driven trainer command (train, pretrain-audio, their `python -m` forms)."""
    parser.add_argument("config", help=f"recipe (YAML), e.g. {example}")
    parser.add_argument("--run-dir", required=True, help="output directory (config, metrics, checkpoints, final/)")
    parser.add_argument("--resume", default=None, help="'latest' (newest checkpoint in --run-dir) or a checkpoint path")
    parser.add_argument("--max-steps", type=int, default=None, help="override max_steps")
    parser.add_argument("--seed", type=int, default=None, help="override seed")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key (dotted for nested keys, YAML value); repeatable")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``openclap`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args))
    except UsageError as exc:
        print(f"openclap {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, FileNotFoundError) as exc:
        # Bad values (unknown model, bad labels, unreadable single input): a usage-level error.
        print(f"openclap {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
