"""Same weights, same file bytes: saved model and audio-tower directories are byte-for-byte reproducible."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import openclap
from openclap.caption.config import get_caption_config
from openclap.caption.factory import create_caption_model, save_caption_model
from openclap.factory import create_model, save_model_dir
from openclap_train.audio_tower import TOWER_PREFIXES, TOWER_WEIGHTS, save_audio_tower


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_saving_the_same_weights_gives_the_same_bytes(tmp_path: Path) -> None:
    """safetensors writes its metadata map in hash order: with more than one entry the bytes of the same
    weights changed from save to save (seen as two 20-step runs of one recipe with different file hashes)."""
    clap = create_model(openclap.registry.get_model_config("tiny"))
    caption = create_caption_model(get_caption_config("clapcap-tiny"))
    tower = {k: v for k, v in clap.state_dict().items() if k.startswith(TOWER_PREFIXES)}
    digests: dict[str, set[str]] = {"clap": set(), "caption": set(), "tower": set()}
    for i in range(12):  # 12 saves: two metadata entries give 2 orders, each ~1/2 likely per save
        digests["clap"].add(_digest(save_model_dir(clap, tmp_path / f"clap{i}") / "model.safetensors"))
        digests["caption"].add(
            _digest(save_caption_model(caption, tmp_path / f"cap{i}") / "model.safetensors")
        )
        out = save_audio_tower(tower, clap.config, tmp_path / f"tower{i}")
        digests["tower"].add(_digest(out / TOWER_WEIGHTS))
    assert {k: len(v) for k, v in digests.items()} == {"clap": 1, "caption": 1, "tower": 1}


def test_saved_weights_are_readable_like_any_new_file(tmp_path: Path) -> None:
    """safetensors creates its files owner-only (0600); a saved model must be readable by the account that
    serves it, as its config.json is: 0o666 less the umask, for the model, the caption model and the tower."""
    clap = create_model(openclap.registry.get_model_config("tiny"))
    caption = create_caption_model(get_caption_config("clapcap-tiny"))
    tower = {k: v for k, v in clap.state_dict().items() if k.startswith(TOWER_PREFIXES)}
    previous = os.umask(0o027)  # not the usual 022: the mode must follow the umask, not be fixed
    try:
        files = [
            save_model_dir(clap, tmp_path / "clap") / "model.safetensors",
            save_caption_model(caption, tmp_path / "cap") / "model.safetensors",
            save_audio_tower(tower, clap.config, tmp_path / "tower") / TOWER_WEIGHTS,
        ]
    finally:
        os.umask(previous)
    modes = {f.parent.name: stat.S_IMODE(f.stat().st_mode) for f in files}
    assert modes == {"clap": 0o640, "cap": 0o640, "tower": 0o640}, {k: oct(v) for k, v in modes.items()}
    assert not list(tmp_path.rglob("*.tmp"))
