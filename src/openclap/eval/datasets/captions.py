"""Audio-caption datasets for retrieval: AudioCaps and Clotho, in their publishers' layouts."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from openclap.eval.datasets.base import RETRIEVAL, DatasetAdapter, EvalDataset, EvalItem, read_csv_rows

logger = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a")


class Clotho(DatasetAdapter):
    """Clotho v2: 15-30-s Freesound clips with 5 captions each (Drossos et al. 2020)."""

    name = "clotho"
    task = RETRIEVAL
    homepage = "https://zenodo.org/record/4783391"
    layout = (
        "clotho/\n  clotho_captions_evaluation.csv   (file_name,caption_1,...,caption_5)\n"
        "  evaluation/<file_name>   (clotho_audio_evaluation.7z unpacked; clotho_audio_evaluation/ also accepted)"
    )
    splits = ("evaluation", "validation", "development")
    default_split = "evaluation"

    def load(self, root: str | os.PathLike, split: str | None = None) -> EvalDataset:
        split = self._split(split)
        base = self._root(root)
        captions_csv = self._need(base / f"clotho_captions_{split}.csv")
        rows = read_csv_rows(captions_csv, ["file_name", "caption_1"])
        columns = (
            sorted((c for c in rows[0] if re.fullmatch(r"caption_\d+", c)), key=lambda c: int(c[8:]))
            if rows
            else []
        )
        audio = self._first_existing(
            [base / str(split) / str(split), base / str(split), base / f"clotho_audio_{split}"]
        )
        items = []
        for row in rows:
            captions = tuple(row[c].strip() for c in columns if row.get(c, "").strip())
            items.append(EvalItem(audio / row["file_name"], captions=captions, key=row["file_name"]))
        return EvalDataset(self.name, self.task, base, items, split=split)


class AudioCaps(DatasetAdapter):
    """AudioCaps: AudioSet clips with human captions (Kim et al. 2019); 5 captions per test clip.

    The audio is not distributed (YouTube); the user downloads it. Files are found by name in the
    split's audio folder: ``<youtube_id>``, ``Y<youtube_id>``, ``<youtube_id>_<start_time>``, with any
    suffix after the 11-character YouTube id (``Y<id>_30.000_40.000.wav`` works), or ``<audiocap_id>``.
    Clips whose audio is absent are reported as missing (AudioCaps videos disappear over time).
    """

    name = "audiocaps"
    task = RETRIEVAL
    homepage = "https://github.com/cdjkim/audiocaps (dataset/{train,val,test}.csv; audio from YouTube)"
    layout = (
        "audiocaps/\n  test.csv   (audiocap_id,youtube_id,start_time,caption; also dataset/test.csv)\n"
        "  audio/test/<youtube_id>.wav   (or test/, or audio/; Y-prefixed or _start-suffixed names accepted)"
    )
    splits = ("test", "val", "train")
    default_split = "test"

    def _audio_index(self, folder: Path) -> dict[str, Path]:
        index: dict[str, Path] = {}
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() in AUDIO_SUFFIXES:
                stem = path.stem
                index.setdefault(stem, path)
                # Keep the YouTube id (11 characters) with and without a leading 'Y'.
                if len(stem) > 11:
                    index.setdefault(stem[:11], path)
                if stem.startswith("Y") and len(stem) >= 12:
                    index.setdefault(stem[1:12], path)
        return index

    def load(self, root: str | os.PathLike, split: str | None = None) -> EvalDataset:
        split = self._split(split)
        base = self._root(root)
        csv_path = self._first_existing([base / f"{split}.csv", base / "dataset" / f"{split}.csv"])
        rows = read_csv_rows(csv_path, ["audiocap_id", "youtube_id", "start_time", "caption"])
        audio = self._first_existing([base / "audio" / str(split), base / str(split), base / "audio"])
        found = self._audio_index(audio)
        clips: dict[tuple[str, str], list[str]] = {}
        ids: dict[tuple[str, str], str] = {}
        for row in rows:
            key = (row["youtube_id"], row["start_time"])
            clips.setdefault(key, []).append(row["caption"].strip())
            ids.setdefault(key, row["audiocap_id"])
        items = []
        for (youtube_id, start), captions in clips.items():
            path = None
            for name in (
                f"{youtube_id}_{start}",
                f"Y{youtube_id}_{start}",
                youtube_id,
                f"Y{youtube_id}",
                ids[(youtube_id, start)],
            ):
                if name in found:
                    path = found[name]
                    break
            if path is None:
                path = audio / f"{youtube_id}.wav"  # absent: reported as missing by the evaluation
            items.append(EvalItem(path, captions=tuple(captions), key=youtube_id))
        return EvalDataset(self.name, self.task, base, items, split=split)
