"""Classification datasets in their publishers' layouts (single-label, and FSD50K / NSynth qualities multi-label).

Each adapter's ``layout`` shows the folder it expects: the one the publisher's archive unpacks to.
Sources for the layouts are the datasets' own READMEs and archives (URLs in ``homepage``).
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import ClassVar

from openclap.eval.datasets.base import (
    MULTI_LABEL,
    SINGLE_LABEL,
    DatasetAdapter,
    DatasetLayoutError,
    EvalDataset,
    EvalItem,
    class_index,
    clean_class_name,
    read_csv_rows,
)

logger = logging.getLogger(__name__)


def _indexed_classes(rows: list[dict[str, str]], index_col: str, name_col: str, path: Path) -> list[str]:
    """Class list ordered by the dataset's own class index column."""
    by_index: dict[int, str] = {}
    for row in rows:
        idx, name = int(row[index_col]), row[name_col]
        if by_index.setdefault(idx, name) != name:
            raise ValueError(f"{path}: class index {idx} names both {by_index[idx]!r} and {name!r}")
    if sorted(by_index) != list(range(len(by_index))):
        raise ValueError(f"{path}: class indices are not 0..{len(by_index) - 1}: {sorted(by_index)}")
    return [by_index[i] for i in range(len(by_index))]


# ------------------------------------------------------------------------------------- ESC-50
class ESC50(DatasetAdapter):
    """ESC-50: 2,000 5-s clips, 50 classes, 5 official folds (Piczak 2015)."""

    name = "esc50"
    task = SINGLE_LABEL
    homepage = "https://github.com/karolpiczak/ESC-50"
    layout = "ESC-50-master/\n  meta/esc50.csv   (filename,fold,target,category,esc10,src_file,take)\n  audio/1-100032-A-0.wav ..."
    esc10_only = False

    def load(self, root: str | os.PathLike, split: str | None = None) -> EvalDataset:
        self._split(split)
        base = self._root(root)
        meta = self._need(base / "meta" / "esc50.csv")
        rows = read_csv_rows(meta, ["filename", "fold", "target", "category", "esc10"])
        if self.esc10_only:
            rows = [r for r in rows if r["esc10"].strip().lower() == "true"]
            # ESC-10 keeps ESC-50's target numbers; re-index its 10 classes in target order.
            targets = sorted({int(r["target"]) for r in rows})
            names = {int(r["target"]): r["category"] for r in rows}
            classes = [names[t] for t in targets]
        else:
            classes = _indexed_classes(rows, "target", "category", meta)
        index = class_index(classes)
        items = [
            EvalItem(
                base / "audio" / r["filename"], (index[r["category"]],), fold=r["fold"], key=r["filename"]
            )
            for r in rows
        ]
        folds = sorted({r["fold"] for r in rows}, key=int)
        return EvalDataset(self.name, self.task, base, items, classes, split=None, folds=folds)


class ESC10(ESC50):
    """ESC-10: the 10-class subset of ESC-50 (rows with esc10=True), same folds."""

    name = "esc10"
    esc10_only = True


# ------------------------------------------------------------------------------- UrbanSound8K
class UrbanSound8K(DatasetAdapter):
    """UrbanSound8K: 8,732 clips <= 4 s, 10 classes, 10 official folds (Salamon et al. 2014)."""

    name = "urbansound8k"
    task = SINGLE_LABEL
    homepage = "https://urbansounddataset.weebly.com/urbansound8k.html"
    layout = (
        "UrbanSound8K/\n  metadata/UrbanSound8K.csv   (slice_file_name,fsID,start,end,salience,fold,classID,class)\n"
        "  audio/fold1/100032-3-0-0.wav ... audio/fold10/..."
    )

    def load(self, root: str | os.PathLike, split: str | None = None) -> EvalDataset:
        self._split(split)
        base = self._root(root)
        meta = self._need(base / "metadata" / "UrbanSound8K.csv")
        rows = read_csv_rows(meta, ["slice_file_name", "fold", "classID", "class"])
        classes = _indexed_classes(rows, "classID", "class", meta)
        index = class_index(classes)
        items = [
            EvalItem(
                base / "audio" / f"fold{r['fold']}" / r["slice_file_name"],
                (index[r["class"]],),
                fold=r["fold"],
                key=r["slice_file_name"],
            )
            for r in rows
        ]
        folds = sorted({r["fold"] for r in rows}, key=int)
        return EvalDataset(self.name, self.task, base, items, classes, folds=folds)


# -------------------------------------------------------------------------------------- GTZAN
def _folder_classes(
    adapter: DatasetAdapter,
    base: Path,
    classes: list[str],
    suffixes: tuple[str, ...],
    subdir_of: dict[str, str] | None = None,
) -> list[EvalItem]:
    """Items from one sub-folder per class (files sorted by name)."""
    items = []
    for label, name in enumerate(classes):
        folder = adapter._need(base / (subdir_of[name] if subdir_of else name))
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes)
        if not files:
            raise DatasetLayoutError(f"{adapter.name}: no {'/'.join(suffixes)} files in '{folder}'")
        items.extend(EvalItem(p, (label,), key=p.name) for p in files)
    return items


class GTZANGenres(DatasetAdapter):
    """GTZAN genre collection: 1,000 30-s excerpts, 10 genres (Tzanetakis & Cook 2002); no official folds."""

    name = "gtzan-genres"
    task = SINGLE_LABEL
    homepage = "http://marsyas.info/index.html (genres.tar.gz; also mirrored on Kaggle as genres_original/)"
    layout = (
        "genres/ (or genres_original/, or the folder holding the genre folders)\n"
        "  blues/blues.00000.au (or .wav) ... rock/rock.00099.au"
    )
    CLASSES: ClassVar[list[str]] = [
        "blues",
        "classical",
        "country",
        "disco",
        "hiphop",
        "jazz",
        "metal",
        "pop",
        "reggae",
        "rock",
    ]
    CLASS_NAMES: ClassVar[dict[str, str]] = {"hiphop": "hip hop"}

    def load(self, root: str | os.PathLike, split: str | None = None) -> EvalDataset:
        self._split(split)
        base = self._root(root)
        for sub in ("genres", "genres_original", "Data/genres_original"):
            if (base / sub / "blues").is_dir():
                base = base / sub
                break
        items = _folder_classes(self, base, self.CLASSES, (".au", ".wav"))
        names = [self.CLASS_NAMES.get(c, c) for c in self.CLASSES]
        return EvalDataset(
            self.name,
            self.task,
            base,
            items,
            list(self.CLASSES),
            names,
            notes=["GTZAN has no official folds; the linear probe uses stratified folds"],
        )


class GTZANMusicSpeech(DatasetAdapter):
    """GTZAN music/speech collection: 128 30-s tracks, 64 music + 64 speech (Tzanetakis 1999)."""

    name = "gtzan-music-speech"
    task = SINGLE_LABEL
    homepage = "http://marsyas.info/index.html (music_speech.tar.gz)"
    layout = "music_speech/\n  music_wav/*.wav\n  speech_wav/*.wav"
    CLASSES: ClassVar[list[str]] = ["music", "speech"]

    def load(self, root: str | os.PathLike, split: str | None = None) -> EvalDataset:
        self._split(split)
        base = self._root(root)
        if (base / "music_speech" / "music_wav").is_dir():
            base = base / "music_speech"
        items = _folder_classes(
            self,
            base,
            self.CLASSES,
            (".wav", ".au"),
            subdir_of={"music": "music_wav", "speech": "speech_wav"},
        )
        return EvalDataset(
            self.name,
            self.task,
            base,
            items,
            list(self.CLASSES),
            notes=["GTZAN music/speech has no official folds; the linear probe uses stratified folds"],
        )


# ---------------------------------------------------------------------------------- VocalSound
class VocalSound(DatasetAdapter):
    """VocalSound: 21,024 recordings of 6 vocal sounds (Gong et al. 2022); speaker-disjoint tr/val/te splits."""

    name = "vocalsound"
    task = SINGLE_LABEL
    homepage = "https://github.com/YuanGongND/vocalsound (vs_release_16k.zip or vs_release_44k.zip)"
    layout = (
        "vs_release_16k/\n  audio_16k/f0003_0_cough.wav ...   (or audio_44k/)\n"
        "  datafiles/tr.json val.json te.json   ({'data': [{'wav': ..., 'labels': ...}]})"
    )
    splits = ("test", "validation", "train", "all")
    default_split = "test"
    probe_splits = ("train", "test")
    # Order of the dataset README; the file name's last field is the label.
    CLASSES: ClassVar[list[str]] = ["laughter", "sigh", "cough", "throatclearing", "sneeze", "sniff"]
    CLASS_NAMES: ClassVar[dict[str, str]] = {"throatclearing": "throat clearing"}
    SPLIT_FILES: ClassVar[dict[str, str]] = {"test": "te.json", "validation": "val.json", "train": "tr.json"}

    def load(self, root: str | os.PathLike, split: str | None = None) -> EvalDataset:
        split = self._split(split)
        base = self._root(root)
        audio = self._first_existing([base / "audio_16k", base / "audio_44k"])
        if split == "all":
            names = sorted(p.name for p in audio.glob("*.wav"))
        else:
            datafile = self._need(base / "datafiles" / self.SPLIT_FILES[str(split)])
            data = json.loads(datafile.read_text())
            if not isinstance(data, dict) or "data" not in data:
                raise ValueError(f"{datafile}: expected a JSON object with a 'data' list")
            names = [Path(entry["wav"]).name for entry in data["data"]]
        index = class_index(self.CLASSES)
        items, unknown = [], []
        for name in names:
            label = Path(name).stem.rsplit("_", 1)[-1]
            if label not in index:
                unknown.append(name)
                continue
            items.append(EvalItem(audio / name, (index[label],), key=name))
        notes = []
        if unknown:
            notes.append(
                f"{len(unknown)} file(s) whose name has no known label were left out, e.g. {unknown[0]}"
            )
            logger.warning("vocalsound: %s", notes[-1])
        class_names = [self.CLASS_NAMES.get(c, c) for c in self.CLASSES]
        return EvalDataset(
            self.name, self.task, base, items, list(self.CLASSES), class_names, split=split, notes=notes
        )


# ------------------------------------------------------------------------------------ CREMA-D
class CremaD(DatasetAdapter):
    """CREMA-D: 7,442 clips from 91 actors, 6 emotions (Cao et al. 2014); no official folds."""

    name = "crema-d"
    task = SINGLE_LABEL
    homepage = "https://github.com/CheyneyComputerScience/CREMA-D"
    layout = "CREMA-D/\n  AudioWAV/1001_DFA_ANG_XX.wav   (ActorID_Sentence_Emotion_Level.wav)"
    CODES: ClassVar[list[str]] = ["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"]
    CLASS_NAMES: ClassVar[dict[str, str]] = {
        "ANG": "anger",
        "DIS": "disgust",
        "FEA": "fear",
        "HAP": "happy",
        "NEU": "neutral",
        "SAD": "sad",
    }
    PATTERN = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")

    def load(self, root: str | os.PathLike, split: str | None = None) -> EvalDataset:
        self._split(split)
        base = self._root(root)
        audio = base / "AudioWAV" if (base / "AudioWAV").is_dir() else self._need(base / "AudioWAV")
        index = class_index(self.CODES)
        items, odd = [], []
        for path in sorted(audio.glob("*.wav")):
            match = self.PATTERN.match(path.stem)
            if not match or match.group(3) not in index:
                odd.append(path.name)
                continue
            items.append(EvalItem(path, (index[match.group(3)],), key=path.name))
        notes = ["CREMA-D has no official folds; the linear probe uses stratified folds"]
        if odd:
            notes.append(
                f"{len(odd)} file(s) not named ActorID_Sentence_Emotion_Level.wav were left out, e.g. {odd[0]}"
            )
            logger.warning("crema-d: %s", notes[-1])
        return EvalDataset(
            self.name,
            self.task,
            base,
            items,
            list(self.CODES),
            [self.CLASS_NAMES[c] for c in self.CODES],
            notes=notes,
        )


# ------------------------------------------------------------------------------------ RAVDESS
class RAVDESS(DatasetAdapter):
    """RAVDESS audio: 24 actors, 8 emotions (Livingstone & Russo 2018); speech and song files."""

    name = "ravdess"
    task = SINGLE_LABEL
    homepage = (
        "https://zenodo.org/record/1188976 (Audio_Speech_Actors_01-24.zip, Audio_Song_Actors_01-24.zip)"
    )
    layout = (
        "Audio_Speech_Actors_01-24/\n  Actor_01/03-01-01-01-01-01-01.wav ...\n"
        "  (Modality-VocalChannel-Emotion-Intensity-Statement-Repetition-Actor.wav)"
    )
    # Emotion codes 01..08, from the dataset's README.
    CLASSES: ClassVar[list[str]] = [
        "neutral",
        "calm",
        "happy",
        "sad",
        "angry",
        "fearful",
        "disgust",
        "surprised",
    ]

    def load(self, root: str | os.PathLike, split: str | None = None) -> EvalDataset:
        self._split(split)
        base = self._root(root)
        actors = sorted(p for p in base.rglob("Actor_*") if p.is_dir())
        if not actors:
            raise DatasetLayoutError(
                f"{self.name}: no Actor_XX folders under '{base}'; expected layout:\n{self.layout}"
            )
        items, odd = [], []
        for folder in actors:
            for path in sorted(folder.glob("*.wav")):
                fields = path.stem.split("-")
                if len(fields) != 7 or not all(f.isdigit() for f in fields) or not 1 <= int(fields[2]) <= 8:
                    odd.append(path.name)
                    continue
                items.append(EvalItem(path, (int(fields[2]) - 1,), key=path.name))
        notes = ["RAVDESS has no official folds; the linear probe uses stratified folds"]
        if odd:
            notes.append(
                f"{len(odd)} file(s) not named like 03-01-05-01-02-01-12.wav were left out, e.g. {odd[0]}"
            )
            logger.warning("ravdess: %s", notes[-1])
        return EvalDataset(self.name, self.task, base, items, list(self.CLASSES), notes=notes)


# ------------------------------------------------------------------------------------ TUT2017
class TUT2017(DatasetAdapter):
    """TUT Acoustic Scenes 2017 (DCASE 2017 task 1): 10-s segments, 15 scenes; 4 official dev folds."""

    name = "tut2017"
    task = SINGLE_LABEL
    homepage = (
        "https://zenodo.org/record/400515 (development), https://zenodo.org/record/1040168 (evaluation)"
    )
    layout = (
        "TUT-acoustic-scenes-2017-development/  (or ...-evaluation/)\n"
        "  meta.txt   (tab-separated: audio/b020_90_100.wav<TAB>beach<TAB>b020)\n"
        "  audio/b020_90_100.wav ...\n  evaluation_setup/fold1_evaluate.txt ... fold4_evaluate.txt  (development)"
    )
    CLASSES: ClassVar[list[str]] = [
        "beach",
        "bus",
        "cafe/restaurant",
        "car",
        "city_center",
        "forest_path",
        "grocery_store",
        "home",
        "library",
        "metro_station",
        "office",
        "park",
        "residential_area",
        "train",
        "tram",
    ]
    CLASS_NAMES: ClassVar[dict[str, str]] = {"cafe/restaurant": "cafe or restaurant"}

    def load(self, root: str | os.PathLike, split: str | None = None) -> EvalDataset:
        self._split(split)
        base = self._root(root)
        meta = self._need(base / "meta.txt")
        index = class_index(self.CLASSES)
        fold_of: dict[str, str] = {}
        setup = base / "evaluation_setup"
        for k in range(1, 5):
            listing = setup / f"fold{k}_evaluate.txt"
            if listing.is_file():
                for line in listing.read_text().splitlines():
                    if line.strip():
                        fold_of[line.split("\t")[0].strip()] = str(k)
        items = []
        for n, line in enumerate(meta.read_text().splitlines(), 1):
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) < 2 or fields[1].strip() not in index:
                raise ValueError(
                    f"{meta}:{n}: expected 'audio/FILE.wav<TAB>SCENE' with one of {self.CLASSES}, "
                    f"got {line!r}"
                )
            rel = fields[0].strip()
            items.append(EvalItem(base / rel, (index[fields[1].strip()],), fold=fold_of.get(rel), key=rel))
        folds = sorted(set(fold_of.values()))
        if folds and any(item.fold is None for item in items):
            raise ValueError(
                f"{setup}: some files of meta.txt are in no fold*_evaluate.txt; is the setup complete?"
            )
        names = [self.CLASS_NAMES.get(c, clean_class_name(c)) for c in self.CLASSES]
        return EvalDataset(self.name, self.task, base, items, list(self.CLASSES), names, folds=folds)


# ------------------------------------------------------------------------------------- FSD50K
class FSD50K(DatasetAdapter):
    """FSD50K: 51,197 Freesound clips, 200 AudioSet classes, multi-label (Fonseca et al. 2022)."""

    name = "fsd50k"
    task = MULTI_LABEL
    homepage = "https://zenodo.org/record/4060432"
    layout = (
        "FSD50K/\n  FSD50K.ground_truth/vocabulary.csv (index,label,mid; no header)  dev.csv  eval.csv\n"
        "  FSD50K.dev_audio/64760.wav ...  FSD50K.eval_audio/37199.wav ..."
    )
    splits = ("eval", "dev", "train", "val")
    default_split = "eval"
    probe_splits = ("dev", "eval")

    def load(self, root: str | os.PathLike, split: str | None = None) -> EvalDataset:
        split = self._split(split)
        base = self._root(root)
        truth = self._need(base / "FSD50K.ground_truth")
        vocab_path = self._need(truth / "vocabulary.csv")
        by_index: dict[int, str] = {}
        for n, line in enumerate(vocab_path.read_text().splitlines(), 1):
            if line.strip():
                fields = line.split(",")
                if len(fields) < 2 or not fields[0].strip().isdigit():
                    raise ValueError(f"{vocab_path}:{n}: expected 'index,label,mid', got {line!r}")
                by_index[int(fields[0])] = fields[1].strip()
        classes = [by_index[i] for i in sorted(by_index)]
        index = class_index(classes)
        gt_name, audio_dir = (
            ("eval.csv", "FSD50K.eval_audio") if split == "eval" else ("dev.csv", "FSD50K.dev_audio")
        )
        gt = self._need(truth / gt_name)
        rows = read_csv_rows(gt, ["fname", "labels"])
        if split in ("train", "val"):
            if rows and "split" not in rows[0]:
                raise ValueError(f"{gt}: no 'split' column; use --split dev for the whole development set")
            rows = [r for r in rows if r["split"] == split]
        items = []
        for r in rows:
            names = [x.strip() for x in r["labels"].split(",") if x.strip()]
            unknown = [x for x in names if x not in index]
            if unknown:
                raise ValueError(f"{gt}: clip {r['fname']} has label(s) {unknown} not in {vocab_path}")
            items.append(
                EvalItem(
                    base / audio_dir / f"{r['fname']}.wav",
                    tuple(sorted({index[x] for x in names})),
                    key=r["fname"],
                )
            )
        return EvalDataset(self.name, self.task, base, items, classes, split=split)


# ----------------------------------------------------------------------------- Speech Commands
class SpeechCommands(DatasetAdapter):
    """Google Speech Commands (v0.01 / v0.02): 1-s keyword clips; official test/validation lists."""

    name = "speech-commands"
    task = SINGLE_LABEL
    homepage = "https://www.tensorflow.org/datasets/catalog/speech_commands (speech_commands_v0.02.tar.gz)"
    layout = (
        "speech_commands_v0.02/\n  yes/0a7c2a8d_nohash_0.wav ... (one folder per word)\n"
        "  testing_list.txt  validation_list.txt   (lines like right/bb05582b_nohash_3.wav)\n  _background_noise_/ (ignored)"
    )
    splits = ("test", "validation", "train")
    default_split = "test"
    probe_splits = ("train", "test")

    def load(self, root: str | os.PathLike, split: str | None = None) -> EvalDataset:
        split = self._split(split)
        base = self._root(root)
        lists = {s: self._need(base / f"{s}_list.txt") for s in ("testing", "validation")}
        listed = {
            s: [ln.strip() for ln in p.read_text().splitlines() if ln.strip()] for s, p in lists.items()
        }
        classes = sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("_"))
        if not classes:
            raise DatasetLayoutError(
                f"{self.name}: no word folders in '{base}'; expected layout:\n{self.layout}"
            )
        index = class_index(classes)
        if split == "train":
            held_out = set(listed["testing"]) | set(listed["validation"])
            rels = [f"{w}/{p.name}" for w in classes for p in sorted((base / w).glob("*.wav"))]
            rels = [r for r in rels if r not in held_out]
        else:
            rels = listed["testing" if split == "test" else "validation"]
        items = []
        for rel in rels:
            word = rel.split("/", 1)[0]
            if word not in index:
                raise ValueError(
                    f"{lists['testing'].parent}: listed file {rel} is in no word folder of {base}"
                )
            items.append(EvalItem(base / rel, (index[word],), key=rel))
        return EvalDataset(self.name, self.task, base, items, classes, split=split)


# ------------------------------------------------------------------------------------- NSynth
def _midi_name(pitch: int) -> str:
    names = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
    return f"{names[pitch % 12]}{pitch // 12 - 1}"


class NSynth(DatasetAdapter):
    """NSynth: 4-s musical notes with instrument family, source, pitch, velocity and qualities (Engel et al. 2017).

    ``nsynth`` classifies the instrument family; ``nsynth-source``, ``nsynth-pitch``, ``nsynth-velocity``
    and ``nsynth-qualities`` (multi-label) read the same files with another target.
    """

    name = "nsynth"
    task = SINGLE_LABEL
    homepage = "https://magenta.tensorflow.org/datasets/nsynth (nsynth-test.jsonwav.tar.gz, ...)"
    layout = (
        "nsynth-test/   (or the folder holding nsynth-train/ nsynth-valid/ nsynth-test/)\n"
        "  examples.json   ({note_str: {instrument_family_str, pitch, velocity, qualities_str, ...}})\n"
        "  audio/bass_synthetic_033-022-050.wav ..."
    )
    splits = ("test", "valid", "train")
    default_split = "test"
    probe_splits = ("train", "test")
    target = "instrument_family"
    # Index order of the dataset's instrument_family / instrument_source / qualities fields.
    FAMILIES: ClassVar[list[str]] = [
        "bass",
        "brass",
        "flute",
        "guitar",
        "keyboard",
        "mallet",
        "organ",
        "reed",
        "string",
        "synth_lead",
        "vocal",
    ]
    SOURCES: ClassVar[list[str]] = ["acoustic", "electronic", "synthetic"]
    QUALITIES: ClassVar[list[str]] = [
        "bright",
        "dark",
        "distortion",
        "fast_decay",
        "long_release",
        "multiphonic",
        "nonlinear_env",
        "percussive",
        "reverb",
        "tempo-synced",
    ]
    VELOCITIES: ClassVar[list[int]] = [25, 50, 75, 100, 127]

    def _classes(self) -> tuple[list[str], list[str]]:
        if self.target == "instrument_family":
            return list(self.FAMILIES), [clean_class_name(c) for c in self.FAMILIES]
        if self.target == "instrument_source":
            return list(self.SOURCES), list(self.SOURCES)
        if self.target == "qualities":
            return list(self.QUALITIES), [
                clean_class_name(c).replace("-", " ").replace("env", "envelope") for c in self.QUALITIES
            ]
        if self.target == "pitch":
            return [str(p) for p in range(128)], [_midi_name(p) for p in range(128)]
        return [str(v) for v in self.VELOCITIES], [f"velocity {v}" for v in self.VELOCITIES]

    def _labels(self, note: dict, index: dict[str, int]) -> tuple[int, ...]:
        if self.target == "instrument_family":
            return (index[note["instrument_family_str"]],)
        if self.target == "instrument_source":
            return (index[note["instrument_source_str"]],)
        if self.target == "qualities":
            return tuple(sorted({index[q] for q in note.get("qualities_str", [])}))
        if self.target == "pitch":
            return (index[str(int(note["pitch"]))],)
        return (index[str(int(note["velocity"]))],)

    def load(self, root: str | os.PathLike, split: str | None = None) -> EvalDataset:
        split = self._split(split)
        base = self._root(root)
        if not (base / "examples.json").is_file() and (base / f"nsynth-{split}").is_dir():
            base = base / f"nsynth-{split}"
        meta = self._need(base / "examples.json")
        notes_by_id = json.loads(meta.read_text())
        classes, names = self._classes()
        index = class_index(classes)
        items, unlabeled = [], 0
        for note_id in sorted(notes_by_id):
            note = notes_by_id[note_id]
            try:
                labels = self._labels(note, index)
            except KeyError as exc:
                raise ValueError(
                    f"{meta}: note {note_id} has an unknown or missing {self.target} ({exc})"
                ) from exc
            if not labels and self.task == MULTI_LABEL:
                unlabeled += 1  # notes without any quality: kept, they count as negatives for every class
            items.append(EvalItem(base / "audio" / f"{note_id}.wav", labels, key=note_id))
        notes = [f"{unlabeled} note(s) have no quality (negatives for every class)"] if unlabeled else []
        return EvalDataset(self.name, self.task, base, items, classes, names, split=split, notes=notes)


class NSynthSource(NSynth):
    """NSynth, instrument source (acoustic / electronic / synthetic)."""

    name = "nsynth-source"
    target = "instrument_source"


class NSynthPitch(NSynth):
    """NSynth, MIDI pitch (128 classes, prompts use note names such as A4)."""

    name = "nsynth-pitch"
    target = "pitch"


class NSynthVelocity(NSynth):
    """NSynth, MIDI velocity (25, 50, 75, 100, 127)."""

    name = "nsynth-velocity"
    target = "velocity"


class NSynthQualities(NSynth):
    """NSynth, note qualities (10, multi-label; mAP)."""

    name = "nsynth-qualities"
    task = MULTI_LABEL
    target = "qualities"
