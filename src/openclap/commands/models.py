"""`openclap models`: the named architectures and their published weights."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `openclap models`."""
    parser = subparsers.add_parser(
        "models", help="list the named models: bundled, published weights, random-init presets"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print one row per model: kind, encoders, rate, clip length, joint size and where its weights are."""
    from openclap.caption.config import get_caption_config, list_caption_models
    from openclap.pretrained import get_bundle, get_caption_bundle
    from openclap.registry import get_model_config, list_bundled_models, list_models

    bundled = set(list_bundled_models())
    rows = []
    for name in list_models():
        cfg = get_model_config(name)
        bundle = get_bundle(name)
        rows.append(
            {
                "name": name,
                "kind": "clap",
                "audio_encoder": cfg.audio.encoder,
                "text_encoder": cfg.text.encoder,
                "sample_rate": cfg.audio.sample_rate,
                "duration": cfg.audio.duration,
                "embed_dim": cfg.embed_dim,
                "weights": _weights(name in bundled, bundle),
            }
        )
    for name in list_caption_models():
        cfg = get_caption_config(name)
        rows.append(
            {
                "name": name,
                "kind": "caption",
                "audio_encoder": cfg.audio.encoder,
                "text_encoder": "gpt2-dec",
                "sample_rate": cfg.audio.sample_rate,
                "duration": cfg.audio.duration,
                "embed_dim": None,
                "weights": _weights(False, get_caption_bundle(name)),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = (
        f"{'name':<34} {'kind':<8} {'audio':<6} {'text':<8} {'rate':>6} {'clip s':>6} {'dim':>5}  weights"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        dim = "-" if r["embed_dim"] is None else r["embed_dim"]
        print(
            f"{r['name']:<34} {r['kind']:<8} {r['audio_encoder']:<6} {r['text_encoder']:<8} {r['sample_rate']:>6} "
            f"{r['duration']:>6g} {dim:>5}  {r['weights']}"
        )
    return 0


def _weights(is_bundled: bool, bundle: object) -> str:
    """Where a model's weights come from, in words."""
    if is_bundled:
        return "bundled, trained (offline)"
    if bundle is not None:
        return f"{bundle.repo_id}/{bundle.filename} (--checkpoint FILE or the hub cache)"
    return "none: RANDOM weights (tests, training from scratch)"
