"""`openclap train CONFIG --run-dir DIR`: contrastive (pre)training and fine-tuning (the openclap_train package)."""

from __future__ import annotations

import argparse
import sys

from openclap.cli import add_recipe_arguments

_MISSING = (
    "training needs the openclap_train package and its extras (pyyaml, webdataset; tensorboard and matplotlib "
    "optional): install them with `pip install 'openclap[train]'`"
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `openclap train` (its arguments mirror `python -m openclap_train`)."""
    parser = subparsers.add_parser(
        "train",
        help="train or fine-tune a CLAP model from a YAML recipe (also under torchrun)",
        description="Train a CLAP model. Multi-process: torchrun --nproc_per_node N -m openclap_train CONFIG ...",
    )
    add_recipe_arguments(parser, example="configs/small-shared-data.yaml")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train as the recipe says; exit code 2 for a bad recipe or missing training extras."""
    import importlib

    try:
        from openclap_train.captioning import is_captioning_config, run_from_args

        if is_captioning_config(args.config):
            return run_from_args(args)
        trainer = importlib.import_module("openclap_train.train")
    except ImportError as exc:
        print(f"openclap train: error: {_MISSING} ({exc})", file=sys.stderr)
        return 2
    trainer.setup_trainer_logging()
    try:
        return trainer.run_from_args(args)
    except trainer.TrainConfigError as exc:
        print(f"openclap train: error: {exc}", file=sys.stderr)
        return 2
