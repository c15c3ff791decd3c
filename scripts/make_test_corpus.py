"""Write the compact test corpus ``tests/data`` from the full real-audio sets in ``../shared/data``.

The corpus keeps the source layout (``<set>/audio/...``, ``<set>/manifest.csv`` with the same columns,
the set's README and licence/attribution files), so every dataset adapter and recipe reads it as it reads
the full sets. Clips are copied byte for byte (no trimming or resampling); the selection is fixed by the
rules below, so re-running on the same source gives the same files:

- esc10: the 10 fold-4 (test) clips also bundled in ``src/openclap/assets/demo`` (one per class), and for
  folds 1 and 2 (train) the smallest file of each class, plus a second fold-1 sea_waves clip with another
  caption (a class with several captions in one fold, for caption-pool tests): 31 clips.
- fsdd: every speaker and digit, takes 0 and 1 (test) and 5, 10 and 11 (train): 200 clips.
- instruments: the 5 demo notes, the first drum-kit test note and the first test note of the vocal family
  (test); for every family the first soft and the last loud train note by file name (train): 31 clips.

Usage: ``python scripts/make_test_corpus.py [--source ../shared/data] [--out tests/data]``.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "src" / "openclap" / "assets" / "demo"
EXTRA_FILES = {
    "esc10": ["README.md", "ATTRIBUTION_ESC10_README.txt"],
    "fsdd": ["README.md", "SOURCE_README.md", "SOURCE_metadata.py"],
    "instruments": ["README.md", "COPYRIGHT_FluidR3_GM.txt"],
}


def _rows(source: Path, name: str) -> tuple[list[str], list[dict[str, str]]]:
    """The header and rows of one set's manifest."""
    with open(source / name / "manifest.csv", newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def pick_esc10(source: Path, rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """The demo's test clips, the smallest clip per class in folds 1-2, one more fold-1 sea_waves clip."""
    demo = {p.name for p in DEMO.glob("*.flac")}
    chosen = [r for r in rows if r["split"] == "test" and Path(r["path"]).name in demo]
    for fold in ("1", "2"):
        for label in sorted({r["label"] for r in rows}):
            group = [r for r in rows if r["fold"] == fold and r["label"] == label]
            chosen.append(
                min(group, key=lambda r: (os.path.getsize(source / "esc10" / r["path"]), r["path"]))
            )
    first = next(r for r in chosen if r["fold"] == "1" and r["label"] == "sea_waves")
    others = [
        r for r in rows if r["fold"] == "1" and r["label"] == "sea_waves" and r["caption"] != first["caption"]
    ]
    chosen.append(min(others, key=lambda r: (os.path.getsize(source / "esc10" / r["path"]), r["path"])))
    return chosen


def pick_fsdd(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """All speakers and digits, takes 0-1 (test) and 5, 10, 11 (train)."""
    return [r for r in rows if r["take"] in {"0", "1", "5", "10", "11"}]


def pick_instruments(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """The demo notes and two more test notes; per family the first soft and last loud train note."""
    demo = {p.name for p in DEMO.glob("*.flac")}
    test = sorted((r for r in rows if r["split"] == "test"), key=lambda r: r["path"])
    chosen = [r for r in test if Path(r["path"]).name in demo]
    for family in ("drums", "vocal"):
        chosen.append(next(r for r in test if r["family"] == family and r not in chosen))
    train = sorted((r for r in rows if r["split"] == "train"), key=lambda r: r["path"])
    for family in sorted({r["family"] for r in train}):
        chosen.append(next(r for r in train if r["family"] == family and r["dynamics"] == "soft"))
        chosen.append([r for r in train if r["family"] == family and r["dynamics"] == "loud"][-1])
    return chosen


def write_set(source: Path, out: Path, name: str) -> int:
    """Copy one set's chosen clips, manifest rows (source order) and licence files; return the clip count."""
    header, rows = _rows(source, name)
    chosen = {
        "esc10": lambda: pick_esc10(source, rows),
        "fsdd": lambda: pick_fsdd(rows),
        "instruments": lambda: pick_instruments(rows),
    }[name]()
    keep = {r["path"] for r in chosen}
    if len(keep) != len(chosen):
        raise RuntimeError(f"{name}: a clip was chosen twice")
    target = out / name
    if target.exists():
        shutil.rmtree(target)
    for r in rows:
        if r["path"] in keep:
            dst = target / r["path"]
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / name / r["path"], dst)
    for extra in EXTRA_FILES[name]:
        shutil.copyfile(source / name / extra, target / extra)
    with open(target / "manifest.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(r for r in rows if r["path"] in keep)
    return len(keep)


def main() -> None:
    """Write the three sets and print their clip counts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "data")
    args = parser.parse_args()
    if not (args.source / "esc10" / "manifest.csv").is_file():
        raise SystemExit(f"{args.source}/esc10/manifest.csv not found: pass --source pointing at shared/data")
    for name in ("esc10", "fsdd", "instruments"):
        print(name, write_set(args.source, args.out, name))


if __name__ == "__main__":
    main()
