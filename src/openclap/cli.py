"""The ``openclap`` command. Each subcommand lives in ``openclap.commands.<name>``.

A command module defines ``add_parser(subparsers)``, which registers its parser and sets
``func=run``; ``run(args) -> int`` returns the exit code (0 ok, 1 some input failed, 2 usage).
Heavy imports happen inside ``run`` so that ``openclap --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

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
EXIT_CLOSED_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a tool whose reader went away (`| head`)
EXIT_INTERRUPTED = 130  # 128 + SIGINT


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
    _remember_parsers(parser)
    return parser


def _remember_parsers(parser: argparse.ArgumentParser) -> None:
    """Give every (sub)parser a ``_parser`` default naming itself: after parsing, ``args._parser`` is the
    innermost parser that matched, whose usage goes with errors found later."""
    parser.set_defaults(_parser=parser)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                _remember_parsers(sub)


class DeprecatedAlias(argparse.Action):
    """An old spelling of an option: stores into the new option's ``dest`` and warns on stderr.

    ``parser.add_argument("--hop", dest="hop_seconds", type=float, action=DeprecatedAlias,
    new="--hop-seconds")``. Old spellings stay for one release, then go."""

    def __init__(self, option_strings: list[str], dest: str, new: str, **kwargs: Any) -> None:
        kwargs.setdefault("help", argparse.SUPPRESS)
        super().__init__(option_strings, dest, **kwargs)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(
            f"{parser.prog}: warning: {option_string} is deprecated and will be removed in the next release; "
            f"use {self.new}",
            file=sys.stderr,
        )
        setattr(namespace, self.dest, values)


def add_progress_argument(parser: argparse.ArgumentParser) -> None:
    """``--progress`` / ``--no-progress`` (default: a progress bar when stderr is a terminal)."""
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )


def progress_enabled(args: argparse.Namespace) -> bool:
    """The resolved ``--progress`` / ``--no-progress`` choice."""
    chosen = getattr(args, "progress", None)
    return sys.stderr.isatty() if chosen is None else bool(chosen)


def add_workers_argument(parser: argparse.ArgumentParser, default: int = 2) -> None:
    """``--num-workers`` (``EmbedOptions.num_workers``); ``--workers`` is its old spelling."""
    parser.add_argument(
        "--num-workers",
        type=int,
        default=default,
        help=f"decoding processes (default {default}; 0 decodes inline)",
    )
    parser.add_argument(
        "--workers", dest="num_workers", type=int, action=DeprecatedAlias, new="--num-workers"
    )


def add_model_arguments(
    parser: argparse.ArgumentParser, default_model: str = "openclap-mini", speed_options: bool = False
) -> None:
    """The --model / --checkpoint / --device options (and --dtype / --compile with ``speed_options``)."""
    parser.add_argument(
        "--model", default=default_model, help=f"preset name or model directory (default: {default_model})"
    )
    parser.add_argument(
        "--checkpoint", default=None, help="weights file for the preset (msclap .pth, LAION .pt, safetensors)"
    )
    parser.add_argument("--tokenizer", default=None, help="tokenizer directory (default: the model's own)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1 (default: cpu)")
    if speed_options:  # only for commands that pass them on to openclap.load / ClapPipeline.configure
        parser.add_argument(
            "--dtype",
            choices=("float32", "bfloat16", "float16"),
            default="float32",
            help="encoder precision via autocast: bfloat16 (CPU or CUDA; on a CPU it pays only with AMX or "
            "AVX-512-BF16, ~2x float32 there, far slower without), float16 (CUDA only); embeddings stay float32 "
            "(default: float32)",
        )
        parser.add_argument(
            "--compile",
            action="store_true",
            help="compile the audio and text encoders: in float32 once per model and machine (AOTInductor, cached; "
            "the first run compiles for minutes), with --dtype bfloat16/float16 torch.compile in every run",
        )


def load_from_arguments(args: argparse.Namespace) -> Any:
    """``openclap.load`` with the options of ``add_model_arguments(..., speed_options=True)``."""
    import openclap

    return openclap.load(
        args.model,
        checkpoint=args.checkpoint,
        tokenizer=args.tokenizer,
        device=args.device,
        dtype=args.dtype,
        compile=args.compile,
    )


def add_recipe_arguments(parser: argparse.ArgumentParser, example: str) -> None:
    """The arguments of every recipe-driven trainer command (train, pretrain-audio, their `python -m` forms)."""
    parser.add_argument("config", help=f"recipe (YAML), e.g. {example}")
    parser.add_argument(
        "--run-dir", required=True, help="output directory (config, metrics, checkpoints, final/)"
    )
    parser.add_argument(
        "--resume", default=None, help="'latest' (newest checkpoint in --run-dir) or a checkpoint path"
    )
    parser.add_argument("--max-steps", type=int, default=None, help="override max_steps")
    parser.add_argument("--seed", type=int, default=None, help="override seed")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key (dotted for nested keys, YAML value); repeatable",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``openclap`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, argv = _nested_parser(argv)
    args, extras = parser.parse_known_args(argv)
    leaf: argparse.ArgumentParser = getattr(args, "_parser", parser)
    if extras:  # reported by the subcommand that got them, with its own usage line
        leaf.error(f"unrecognized arguments: {' '.join(extras)}")
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not getattr(args, "func", None):
        leaf.print_help()
        return EXIT_USAGE
    try:
        code = int(args.func(args))
        sys.stdout.flush()  # a closed pipe shows up here, not at interpreter exit
        return code
    except BrokenPipeError:
        # The reader went away (`openclap ... | head`): stop quietly, like other Unix tools.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_CLOSED_PIPE
    except KeyboardInterrupt:
        print(f"{leaf.prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except UsageError as exc:
        leaf.print_usage(sys.stderr)
        print(f"{leaf.prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, FileNotFoundError) as exc:
        # Bad values (unknown model, bad labels, unreadable single input): a usage-level error.
        print(f"{leaf.prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _nested_parser(argv: list[str]) -> tuple[argparse.ArgumentParser, list[str]]:
    """The parser for ``argv`` and the arguments it reads: ``embed merge`` (a command that shares its
    position with `embed`'s inputs) has its own parser, usage and help; everything else the full parser."""
    words = [i for i, a in enumerate(argv) if not a.startswith("-")]
    if len(words) >= 2 and [argv[i] for i in words[:2]] == ["embed", "merge"]:
        from openclap.embed_merge import build_merge_parser

        return build_merge_parser(), [a for i, a in enumerate(argv) if i not in words[:2]]
    return build_parser(), argv


if __name__ == "__main__":
    sys.exit(main())
