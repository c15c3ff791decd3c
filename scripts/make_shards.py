"""Pack a manifest (CSV/JSONL) into WebDataset tar shards for streamed training.

    python scripts/make_shards.py ../shared/data/esc10/manifest.csv --out shards/esc10-train --split train \
        --shard-size 200

writes ``shards/esc10-train-000000.tar, ...`` and ``shards/esc10-train.json`` (the shard list, sample count
and the brace pattern to put in a training recipe's ``train_manifest``). Each sample holds the original
audio file's bytes under its extension (``flac``, ``wav``, ...; no re-encoding), ``txt`` (the caption) and
``json`` (label and source path). Unreadable or missing files are reported and left out.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tarfile
from pathlib import Path

from openclap_train.config import ManifestSpec
from openclap_train.data import AUDIO_KEYS, read_manifest


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644  # fixed mtime: the same input gives the same bytes
    tar.addfile(info, io.BytesIO(data))


def make_shards(manifest: str, out_prefix: str, shard_size: int = 1000, split: str | None = None) -> dict:
    """Write the shards; returns the index (also written to ``<out_prefix>.json``)."""
    if shard_size < 1:
        raise ValueError(f"--shard-size must be >= 1, got {shard_size}")
    samples = read_manifest(ManifestSpec(path=manifest, split=split))
    prefix = Path(out_prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    shards: list[str] = []
    counts: list[int] = []
    skipped: list[str] = []
    tar = None
    for sample in samples:
        path = Path(sample.path)
        ext = path.suffix.lower().lstrip(".")
        if ext not in AUDIO_KEYS:
            skipped.append(f"{path} (extension {ext!r} is not one of {AUDIO_KEYS})")
            continue
        try:
            data = path.read_bytes()
        except OSError as exc:
            skipped.append(f"{path} ({exc.strerror})")
            continue
        if tar is None or counts[-1] >= shard_size:
            if tar is not None:
                tar.close()
            name = f"{prefix.name}-{len(shards):06d}.tar"
            shards.append(name)
            counts.append(0)
            tar = tarfile.open(prefix.parent / name, "w")  # noqa: SIM115 - one open shard across loop iterations
        key = f"{len(shards) - 1:06d}{counts[-1]:06d}"
        _add(tar, f"{key}.{ext}", data)
        _add(tar, f"{key}.txt", sample.caption.encode("utf-8"))
        _add(tar, f"{key}.json", json.dumps({"label": sample.label, "source": str(path)}).encode("utf-8"))
        counts[-1] += 1
    if tar is not None:
        tar.close()
    if not shards:
        raise ValueError(f"no readable audio in {manifest}; nothing written")
    pattern = f"{prefix}-{{000000..{len(shards) - 1:06d}}}.tar"
    index = {
        "pattern": pattern,
        "shards": shards,
        "counts": counts,
        "samples": sum(counts),
        "skipped": skipped,
    }
    Path(f"{prefix}.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("manifest", help="CSV or JSONL manifest (path + caption columns)")
    parser.add_argument(
        "--out", required=True, help="output prefix, e.g. shards/train (gives shards/train-000000.tar)"
    )
    parser.add_argument("--shard-size", type=int, default=1000, help="samples per shard (default 1000)")
    parser.add_argument("--split", default=None, help="only rows whose split column equals this")
    args = parser.parse_args(argv)
    index = make_shards(args.manifest, args.out, args.shard_size, args.split)
    for line in index["skipped"]:
        print(f"skipped: {line}", file=sys.stderr)
    print(f"{index['samples']} samples in {len(index['shards'])} shard(s): {index['pattern']}")
    return 1 if index["skipped"] else 0


if __name__ == "__main__":
    sys.exit(main())
