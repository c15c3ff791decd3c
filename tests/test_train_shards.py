"""WebDataset shards: packing a manifest, rank/worker splitting (no sample twice per epoch), a short run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from openclap.factory import get_model_config
from openclap.text.tokenizer import TextTokenizer
from openclap_train.data import ShardStream, expand_shards, shard_loader
from openclap_train.train import main

REPO = Path(__file__).resolve().parents[1]


def _pack(shared_data: Path, out: Path, n: int = 24, shard_size: int = 6) -> dict:
    out.parent.mkdir(parents=True, exist_ok=True)
    manifest = out.parent / "m.csv"
    rows = (shared_data / "fsdd/manifest.csv").read_text().splitlines()
    body = [r.replace("audio/", str(shared_data / "fsdd/audio") + "/", 1) for r in rows[1 : n + 1]]
    manifest.write_text("\n".join([rows[0], *body, "missing.flac,a missing file,x,s,train,a,1,1"]) + "\n")
    res = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts/make_shards.py"),
            str(manifest),
            "--out",
            str(out),
            "--shard-size",
            str(shard_size),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 1 and "missing.flac" in res.stderr  # reported, left out
    return json.loads(Path(f"{out}.json").read_text())


def test_make_shards_and_split_by_rank_and_worker(tmp_path, shared_data):
    index = _pack(shared_data, tmp_path / "shards" / "fsdd")
    assert index["samples"] == 24 and index["counts"] == [6, 6, 6, 6]
    urls = expand_shards(index["pattern"])
    assert len(urls) == 4
    audio = get_model_config("tiny").audio
    tok = TextTokenizer(get_model_config("tiny").text)
    seen: list[str] = []
    for rank in range(2):
        stream = ShardStream(urls, audio, tok, micro_batch=3, seed=0, rank=rank, world_size=2, num_workers=2)
        it = iter(shard_loader(stream, num_workers=2))
        batches = [next(it) for _ in range(4)]  # 12 samples per rank = one epoch of its two shards
        assert all(b["waveform"].shape == (3, audio.num_samples) for b in batches)
        seen += [k for b in batches for k in b["keys"]]
    assert sorted(seen) == sorted(set(seen)) and len(seen) == 24  # every sample exactly once in epoch 0
    # resuming skips raw batches: the stream continues where the uninterrupted one was
    stream = ShardStream(urls, audio, tok, micro_batch=3, seed=0, num_workers=1, skip_batches=0)
    it = iter(shard_loader(stream, 0))
    first = [next(it) for _ in range(3)]
    skipped = iter(shard_loader(ShardStream(urls, audio, tok, micro_batch=3, seed=0, skip_batches=2), 0))
    again = next(skipped)
    assert again["keys"] == first[2]["keys"] and torch.equal(again["waveform"], first[2]["waveform"])


@pytest.mark.slow
def test_training_from_shards(tmp_path, shared_data):
    index = _pack(shared_data, tmp_path / "shards" / "fsdd", n=16, shard_size=4)
    recipe = {
        "model": "tiny",
        "model_overrides": {"audio": {"duration": 1.0}},
        "train_manifest": [index["pattern"]],
        "batch_size": 4,
        "max_steps": 2,
        "log_every": 1,
        "shuffle_buffer": 4,
    }
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(recipe))
    assert main([str(cfg), "--run-dir", str(tmp_path / "run")]) == 0
    assert (tmp_path / "run/final/model.safetensors").is_file()
