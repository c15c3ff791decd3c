"""`openclap export onnx MODEL_OR_DIR --out DIR`: ONNX files for running the model without PyTorch."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `openclap export onnx`."""
    parser = subparsers.add_parser("export", help="export a model for other runtimes (onnx)")
    sub = parser.add_subparsers(dest="export_format", metavar="FORMAT", required=True)
    onnx = sub.add_parser(
        "onnx",
        help="audio + text towers as ONNX, tokenizer and pre-processing JSON (run with openclap.onnx.load)",
    )
    onnx.add_argument("model", metavar="MODEL_OR_DIR", help="preset name or model directory")
    onnx.add_argument("--out", required=True, help="output directory")
    onnx.add_argument(
        "--checkpoint", default=None, help="weights file for the preset (msclap .pth, LAION .pt, safetensors)"
    )
    onnx.add_argument("--tokenizer", default=None, help="tokenizer directory (default: the model's own)")
    onnx.add_argument(
        "--random-weights", action="store_true", help="seeded random weights (testing the export)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the model and write the ONNX export."""
    import openclap
    from openclap.onnx.export import export_onnx

    pipeline = openclap.load(
        args.model, checkpoint=args.checkpoint, tokenizer=args.tokenizer, pretrained=not args.random_weights
    )
    out = export_onnx(pipeline, args.out)
    print(f"exported {args.model} to {out} (audio.onnx, text.onnx, tokenizer/, preprocessing.json)")
    return 0
