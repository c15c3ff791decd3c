"""`openclap convert {msclap,laion,hf} SOURCE --out DIR`: a peer's weights -> an openclap model directory."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `openclap convert`."""
    parser = subparsers.add_parser(
        "convert",
        help="convert msclap / LAION-CLAP / transformers ClapModel weights into an openclap model directory",
        description=(
            "Convert a published checkpoint into DIR (config.json + model.safetensors + tokenizer/ + "
            "conversion_report.json), loadable offline with `openclap.load(DIR)` / `--model DIR`. Pickled "
            "files are read with torch.load(weights_only=True) only."
        ),
    )
    parser.add_argument("format", choices=("msclap", "laion", "hf"), help="checkpoint family")
    parser.add_argument("source", help="checkpoint file (.pth / .pt) or transformers ClapModel directory")
    parser.add_argument("--out", required=True, help="output model directory")
    parser.add_argument(
        "--model",
        default=None,
        help="target preset (default: the one the checkpoint looks like; hf: from its config.json)",
    )
    parser.add_argument(
        "--tokenizer",
        default=None,
        help="tokenizer directory (default: bundled, the source's, or the hub cache)",
    )
    parser.add_argument(
        "--text-from", default=None, help="clapcap only: msclap CLAP checkpoint that supplies the text tower"
    )
    parser.add_argument(
        "--report", action="store_true", help="print every tensor's mapping, not just the summary"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Convert, write the directory, print the conversion summary."""
    from openclap.convert.export import convert_to_dir

    out, report = convert_to_dir(
        args.format,
        args.source,
        args.out,
        model=args.model,
        tokenizer=args.tokenizer,
        text_from=args.text_from,
    )
    print(report.summary())
    if args.report:
        for src, dst in report.mapped:
            print(f"mapped  {src} -> {dst}")
        for src, reason in report.dropped:
            print(f"dropped {src}: {reason}")
        for dst, reason in report.filled:
            print(f"filled  {dst}: {reason}")
    print(f"wrote {out} (load it with --model {out})")
    return 0
