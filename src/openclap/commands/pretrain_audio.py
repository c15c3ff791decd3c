"""`openclap pretrain-audio CONFIG --run-dir DIR`: multi-task pretraining of the audio tower ("HTSAT-22" stage)."""

from __future__ import annotations

import argparse
import sys

from openclap.cli import add_recipe_arguments

_MISSING = (
    "pretrain-audio needs the openclap_train package and its extras (pyyaml; tensorboard optional): "
    "install them with `pip install 'openclap[train]'`"
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `openclap pretrain-audio` (its arguments mirror `python -m openclap_train.multitask`)."""
    parser = subparsers.add_parser(
        "pretrain-audio",
        help="pretrain an audio encoder on several labelled tasks at once (then: openclap train with init_audio)",
        description="Multi-task pretraining of a CLAP audio tower, one head per task (single_label, multi_label, "
        "regression). final/ holds the tower without heads. Multi-process: "
        "torchrun --nproc_per_node N -m openclap_train.multitask CONFIG --run-dir DIR",
    )
    add_recipe_arguments(parser, example="configs/pretrain-audio/shared-data-7tasks.yaml")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Pretrain as the recipe says; exit code 2 for a bad recipe or missing training extras."""
    import importlib

    try:
        trainer = importlib.import_module("openclap_train.multitask.train")
        base = importlib.import_module("openclap_train.train")
    except ImportError as exc:
        print(f"openclap pretrain-audio: error: {_MISSING} ({exc})", file=sys.stderr)
        return 2
    base.setup_trainer_logging()
    try:
        return trainer.run_from_args(args)
    except base.TrainConfigError as exc:
        print(f"openclap pretrain-audio: error: {exc}", file=sys.stderr)
        return 2
