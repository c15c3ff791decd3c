"""`openclap models`: the named architectures and their published weights."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `openclap models`."""
    parser = subparsers.add_parser("models", help="list the named model architectures")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print one row per preset: encoders, rate, clip length, joint size, published weights."""
    from openclap.pretrained import get_bundle
    from openclap.registry import get_model_config, list_models

    rows = []
    for name in list_models():
        cfg = get_model_config(name)
        bundle = get_bundle(name)
        rows.append(
            {
                "name": name,
                "audio_encoder": cfg.audio.encoder,
                "text_encoder": cfg.text.encoder,
                "sample_rate": cfg.audio.sample_rate,
                "duration": cfg.audio.duration,
                "embed_dim": cfg.embed_dim,
                "weights": f"{bundle.repo_id}/{bundle.filename}" if bundle else None,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = f"{'name':<34} {'audio':<6} {'text':<8} {'rate':>6} {'clip s':>6} {'dim':>5}  weights"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['name']:<34} {r['audio_encoder']:<6} {r['text_encoder']:<8} {r['sample_rate']:>6} "
            f"{r['duration']:>6g} {r['embed_dim']:>5}  {r['weights'] or '(random init / bring your own)'}"
        )
    return 0
