"""`openclap tokenizer train`: a GPT-2-style byte-level BPE trained on manifests' captions."""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `openclap tokenizer train`."""
    parser = subparsers.add_parser("tokenizer", help="train a tokenizer for a from-scratch text tower")
    sub = parser.add_subparsers(dest="tokenizer_command", metavar="ACTION")
    train = sub.add_parser("train", help="train a byte-level BPE on the captions of manifests")
    train.add_argument("manifests", nargs="+", help="CSV/JSONL manifests with a caption (or label) column")
    train.add_argument(
        "--out", required=True, help="output directory (tokenizer.json + tokenizer_config.json)"
    )
    train.add_argument(
        "--vocab-size", type=int, default=2000, help="vocabulary size incl. 256 bytes (default 2000)"
    )
    train.add_argument(
        "--min-frequency", type=int, default=2, help="least count of a merged pair (default 2)"
    )
    train.add_argument("--split", default=None, help="only rows whose split column equals this, e.g. train")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train and save the tokenizer; print its size."""
    if getattr(args, "tokenizer_command", None) != "train":
        print("openclap tokenizer: error: choose an action: train", file=sys.stderr)
        return 2
    from openclap_train.config import ManifestSpec
    from openclap_train.data import read_manifest
    from openclap_train.tokenizer_train import train_bpe

    captions = [
        s.caption for m in args.manifests for s in read_manifest(ManifestSpec(path=m, split=args.split))
    ]
    out = train_bpe(captions, args.out, vocab_size=args.vocab_size, min_frequency=args.min_frequency)
    from tokenizers import Tokenizer

    size = Tokenizer.from_file(str(out / "tokenizer.json")).get_vocab_size()
    print(f"trained a byte-level BPE of {size} tokens on {len(captions)} captions -> {out}")
    return 0
