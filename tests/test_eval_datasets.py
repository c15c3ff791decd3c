"""Every dataset adapter on a tiny fixture in its publisher's layout, built from real clips of tests/data.

Each fixture is written in the test (WAV, or AU for GTZAN, as the publisher ships them; the audio is
real recordings from the shared sets, decoded and re-encoded), read by the adapter, checked item by
item, and evaluated end to end with the `tiny` preset.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from openclap.eval.cache import EmbeddingCache
from openclap.eval.datasets import DATASETS, DatasetLayoutError, Manifest, get_adapter, load_dataset
from openclap.eval.datasets.base import MULTI_LABEL, RETRIEVAL, SINGLE_LABEL
from openclap.eval.retrieval import retrieval
from openclap.eval.zero_shot import zero_shot

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(shared_data: Path) -> Path:
    """The committed test corpus (tests/data)."""
    return shared_data


@pytest.fixture(scope="module")
def pipeline():
    import openclap.pipeline

    return openclap.pipeline.load("tiny")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    with EmbeddingCache(tmp_path_factory.mktemp("cache"), "tiny-test") as c:
        yield c


def _clips(data: Path, subset: str, n: int) -> list[Path]:
    """The first n test clips of a shared set (sorted by path, deterministic)."""
    with open(data / subset / "manifest.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "test"]
    return [data / subset / r["path"] for r in sorted(rows, key=lambda r: r["path"])[:n]]


def _put(src: Path, dst: Path, fmt: str = "WAV") -> Path:
    """Decode a real clip and write it where the publisher's layout puts it."""
    wave, rate = sf.read(src, dtype="int16")
    dst.parent.mkdir(parents=True, exist_ok=True)
    sf.write(dst, wave, rate, format=fmt, subtype="PCM_16")
    return dst


def _corrupt(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(64))


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def _check_end_to_end(pipeline, cache, dataset, *, evaluated: int, missing: int = 0, unreadable: int = 0):
    if dataset.task == RETRIEVAL:
        result = retrieval(pipeline, dataset, cache=cache)
        t2a = result.text_to_audio  # values by hand: tests/test_eval_metrics.py
        assert 0.0 <= t2a["R@1"] <= t2a["R@5"] <= t2a["R@10"] <= 1.0 and t2a["mean_rank"] >= 1.0
    else:
        from sklearn.metrics import average_precision_score

        result = zero_shot(pipeline, dataset, cache=cache)
        if dataset.task == MULTI_LABEL:  # mAP over the classes with a positive, by scikit-learn
            aps = [average_precision_score(result.targets[:, c], result.scores[:, c])
                   for c in range(result.targets.shape[1]) if result.targets[:, c].any()]  # fmt: skip
            assert result.metrics["mAP"] == pytest.approx(np.mean(aps))
        else:
            hits = np.argmax(result.scores, axis=1) == result.targets
            assert result.metrics["accuracy"] == pytest.approx(hits.mean())
    assert result.num_evaluated == evaluated
    assert result.excluded["missing"] == missing
    assert result.excluded["unreadable"] == unreadable
    return result


# --------------------------------------------------------------------------------- classification
def test_esc50_and_esc10(tmp_path, data, pipeline, cache):
    root = tmp_path / "ESC-50-master"
    clips = _clips(data, "esc10", 4)
    rows = [  # filename,fold,target,category,esc10,src_file,take -- as in meta/esc50.csv
        ["1-100032-A-0.wav", 1, 0, "dog", "True", 100032, "A"],
        ["1-100038-A-14.wav", 1, 14, "chirping_birds", "False", 100038, "A"],
        ["2-100648-A-43.wav", 2, 43, "chainsaw", "True", 100648, "A"],
        ["5-103415-A-0.wav", 5, 0, "dog", "True", 103415, "A"],
    ]
    for clip, row in zip(clips, rows):
        _put(clip, root / "audio" / row[0])
    _write_csv(
        root / "meta" / "esc50.csv",
        ["filename", "fold", "target", "category", "esc10", "src_file", "take"],
        rows,
    )
    # ESC-50 numbers classes 0..49; a fixture holds three of them, so fill the index gaps with a stub row
    # whose file is missing: the evaluation must report it, not crash.
    stub = [
        [f"9-{t}-A-{t}.wav", 3, t, f"class_{t}", "False", t, "A"] for t in range(50) if t not in (0, 14, 43)
    ]
    _write_csv(
        root / "meta" / "esc50.csv",
        ["filename", "fold", "target", "category", "esc10", "src_file", "take"],
        rows + stub,
    )
    ds = load_dataset("esc50", root)
    assert ds.task == SINGLE_LABEL and len(ds.classes) == 50
    assert ds.classes[14] == "chirping_birds" and ds.class_names[14] == "chirping birds"
    assert ds.folds == ["1", "2", "3", "5"]
    first = ds.items[0]
    assert first.path == root / "audio" / "1-100032-A-0.wav" and first.labels == (0,) and first.fold == "1"
    _check_end_to_end(pipeline, cache, ds, evaluated=4, missing=47)

    esc10 = load_dataset("esc10", root)
    assert esc10.classes == ["dog", "chainsaw"]  # ESC-50 target order, re-indexed
    assert [i.labels for i in esc10.items] == [(0,), (1,), (0,)]
    _check_end_to_end(pipeline, cache, esc10, evaluated=3)


def test_urbansound8k(tmp_path, data, pipeline, cache):
    root = tmp_path / "UrbanSound8K"
    classes = [
        "air_conditioner",
        "car_horn",
        "children_playing",
        "dog_bark",
        "drilling",
        "engine_idling",
        "gun_shot",
        "jackhammer",
        "siren",
        "street_music",
    ]
    rows = []
    for k, clip in enumerate(_clips(data, "esc10", 10)):
        name = f"{100000 + k}-{k}-0-0.wav"
        fold = k % 10 + 1
        _put(clip, root / "audio" / f"fold{fold}" / name)
        rows.append([name, 100000 + k, 0.0, 4.0, 1, fold, k, classes[k]])
    _corrupt(root / "audio" / "fold1" / "999-3-0-0.wav")
    rows.append(["999-3-0-0.wav", 999, 0.0, 4.0, 1, 1, 3, "dog_bark"])
    _write_csv(
        root / "metadata" / "UrbanSound8K.csv",
        ["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"],
        rows,
    )
    ds = load_dataset("urbansound8k", root)
    assert ds.classes == classes and ds.class_names[0] == "air conditioner"
    assert ds.folds == [str(k) for k in range(1, 11)]
    assert ds.items[3].path == root / "audio" / "fold4" / "100003-3-0-0.wav" and ds.items[3].labels == (3,)
    _check_end_to_end(pipeline, cache, ds, evaluated=10, unreadable=1)


def test_gtzan_genres_au_and_kaggle_wav(tmp_path, data, pipeline, cache):
    genres = DATASETS["gtzan-genres"].CLASSES
    clips = _clips(data, "esc10", 10)
    root = tmp_path / "gtzan"
    for genre, clip in zip(genres, clips):
        _put(clip, root / "genres" / genre / f"{genre}.00000.au", fmt="AU")
    ds = load_dataset("gtzan-genres", root)
    assert ds.root == root / "genres" and len(ds) == 10
    assert ds.class_names[4] == "hip hop" and ds.items[4].path.name == "hiphop.00000.au"
    _check_end_to_end(pipeline, cache, ds, evaluated=10)
    kaggle = tmp_path / "kaggle"
    for genre, clip in zip(genres, clips):
        _put(clip, kaggle / "Data" / "genres_original" / genre / f"{genre}.00000.wav")
    assert len(load_dataset("gtzan-genres", kaggle)) == 10


def test_gtzan_music_speech(tmp_path, data, pipeline, cache):
    root = tmp_path / "music_speech"
    for k, clip in enumerate(_clips(data, "instruments", 2)):
        _put(clip, root / "music_wav" / f"music{k}.wav")
    for k, clip in enumerate(_clips(data, "fsdd", 2)):
        _put(clip, root / "speech_wav" / f"speech{k}.wav")
    ds = load_dataset("gtzan-music-speech", tmp_path)  # the folder holding music_speech/ also works
    assert ds.classes == ["music", "speech"] and [i.labels for i in ds.items] == [(0,), (0,), (1,), (1,)]
    _check_end_to_end(pipeline, cache, ds, evaluated=4)


def test_vocalsound(tmp_path, data, pipeline, cache):
    root = tmp_path / "vs_release_16k"
    names = ["f0003_0_cough.wav", "f0003_0_throatclearing.wav", "m0004_0_laughter.wav", "m0005_0_sniff.wav"]
    for name, clip in zip(names, _clips(data, "fsdd", 4)):
        _put(clip, root / "audio_16k" / name)
    (root / "datafiles").mkdir(parents=True)

    def entry(n: str) -> dict[str, str]:
        return {"wav": f"/data/sls/vocalsound/audio_16k/{n}", "labels": "/m/vs_x"}

    (root / "datafiles" / "te.json").write_text(json.dumps({"data": [entry(n) for n in names[:3]]}))
    (root / "datafiles" / "tr.json").write_text(json.dumps({"data": [entry(names[3])]}))
    ds = load_dataset("vocalsound", root)
    assert ds.split == "test" and len(ds) == 3
    assert [ds.class_names[i.labels[0]] for i in ds.items] == ["cough", "throat clearing", "laughter"]
    assert len(load_dataset("vocalsound", root, "all")) == 4
    assert load_dataset("vocalsound", root, "train").items[0].labels == (
        DATASETS["vocalsound"].CLASSES.index("sniff"),
    )
    _check_end_to_end(pipeline, cache, ds, evaluated=3)


def test_crema_d(tmp_path, data, pipeline, cache):
    root = tmp_path / "CREMA-D"
    names = ["1001_DFA_ANG_XX.wav", "1001_IEO_HAP_HI.wav", "1002_TIE_SAD_XX.wav", "1091_WSI_NEU_XX.wav"]
    for name, clip in zip(names, _clips(data, "fsdd", 4)):
        _put(clip, root / "AudioWAV" / name)
    _put(_clips(data, "fsdd", 5)[-1], root / "AudioWAV" / "notes.wav")  # not a CREMA-D name: left out, noted
    ds = load_dataset("crema-d", root)
    assert ds.classes == ["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"]
    assert [ds.class_names[i.labels[0]] for i in ds.items] == ["anger", "happy", "sad", "neutral"]
    assert any("left out" in n for n in ds.notes)
    _check_end_to_end(pipeline, cache, ds, evaluated=4)


def test_ravdess(tmp_path, data, pipeline, cache):
    root = tmp_path / "Audio_Speech_Actors_01-24"
    names = [
        ("Actor_01", "03-01-01-01-01-01-01.wav"),
        ("Actor_01", "03-01-05-02-01-02-01.wav"),
        ("Actor_12", "03-01-08-01-02-01-12.wav"),
    ]
    for (actor, name), clip in zip(names, _clips(data, "fsdd", 3)):
        _put(clip, root / actor / name)
    ds = load_dataset("ravdess", root)
    assert [ds.classes[i.labels[0]] for i in ds.items] == ["neutral", "angry", "surprised"]
    _check_end_to_end(pipeline, cache, ds, evaluated=3)


def test_tut2017_with_official_folds(tmp_path, data, pipeline, cache):
    root = tmp_path / "TUT-acoustic-scenes-2017-development"
    entries = [
        ("audio/b020_90_100.wav", "beach", "b020"),
        ("audio/a001_10_20.wav", "cafe/restaurant", "a001"),
        ("audio/c003_0_10.wav", "city_center", "c003"),
        ("audio/t010_40_50.wav", "tram", "t010"),
    ]
    for (rel, _, _), clip in zip(entries, _clips(data, "esc10", 4)):
        _put(clip, root / rel)
    (root / "meta.txt").write_text("".join(f"{r}\t{s}\t{i}\n" for r, s, i in entries))
    setup = root / "evaluation_setup"
    setup.mkdir()
    for k in range(1, 5):
        rel, scene, _ = entries[k - 1]
        (setup / f"fold{k}_evaluate.txt").write_text(f"{rel}\t{scene}\n")
    ds = load_dataset("tut2017", root)
    assert ds.folds == ["1", "2", "3", "4"] and [i.fold for i in ds.items] == ["1", "2", "3", "4"]
    assert ds.class_names[2] == "cafe or restaurant" and ds.class_names[4] == "city center"
    assert ds.items[1].labels == (2,)
    _check_end_to_end(pipeline, cache, ds, evaluated=4)


def test_fsd50k_multi_label(tmp_path, data, pipeline, cache):
    root = tmp_path / "FSD50K"
    truth = root / "FSD50K.ground_truth"
    truth.mkdir(parents=True)
    (truth / "vocabulary.csv").write_text(
        "0,Bark,/m/05tny_\n1,Dog,/m/0bt9lr\n2,Chainsaw,/m/01j4z9\n3,Rain,/m/06mb1\n"
    )
    clips = _clips(data, "esc10", 4)
    _write_csv(
        truth / "eval.csv",
        ["fname", "labels", "mids"],
        [
            [37199, "Bark,Dog", "/m/05tny_,/m/0bt9lr"],
            [175151, "Chainsaw", "/m/01j4z9"],
            [253463, "Rain", "/m/06mb1"],
        ],
    )
    _write_csv(
        truth / "dev.csv",
        ["fname", "labels", "mids", "split"],
        [[64760, "Dog", "/m/0bt9lr", "train"], [16399, "Rain", "/m/06mb1", "val"]],
    )
    for fname, clip in zip([37199, 175151], clips):
        _put(clip, root / "FSD50K.eval_audio" / f"{fname}.wav")  # 253463.wav is missing on purpose
    for fname, clip in zip([64760, 16399], clips[2:]):
        _put(clip, root / "FSD50K.dev_audio" / f"{fname}.wav")
    ds = load_dataset("fsd50k", root)
    assert ds.task == MULTI_LABEL and ds.split == "eval" and ds.classes == ["Bark", "Dog", "Chainsaw", "Rain"]
    assert ds.items[0].labels == (0, 1) and ds.items[0].path == root / "FSD50K.eval_audio" / "37199.wav"
    result = _check_end_to_end(pipeline, cache, ds, evaluated=2, missing=1)
    assert result.per_class["rain"]["ap"] is None  # no readable positive: excluded from the mean
    assert [i.key for i in load_dataset("fsd50k", root, "val").items] == ["16399"]
    assert len(load_dataset("fsd50k", root, "dev")) == 2


def test_speech_commands(tmp_path, data, pipeline, cache):
    root = tmp_path / "speech_commands_v0.02"
    clips = _clips(data, "fsdd", 6)
    files = [
        "zero/0a7c2a8d_nohash_0.wav",
        "zero/bb05582b_nohash_3.wav",
        "one/0a7c2a8d_nohash_1.wav",
        "one/c1d39ce8_nohash_0.wav",
        "two/0a7c2a8d_nohash_0.wav",
        "two/ffd2ba2f_nohash_2.wav",
    ]
    for rel, clip in zip(files, clips):
        _put(clip, root / rel)
    _put(clips[0], root / "_background_noise_" / "white_noise.wav")
    (root / "testing_list.txt").write_text("zero/bb05582b_nohash_3.wav\none/c1d39ce8_nohash_0.wav\n")
    (root / "validation_list.txt").write_text("two/ffd2ba2f_nohash_2.wav\n")
    ds = load_dataset("speech-commands", root)
    assert ds.classes == ["one", "two", "zero"]
    assert [(i.key, i.labels) for i in ds.items] == [
        ("zero/bb05582b_nohash_3.wav", (2,)),
        ("one/c1d39ce8_nohash_0.wav", (0,)),
    ]
    assert len(load_dataset("speech-commands", root, "train")) == 3
    _check_end_to_end(pipeline, cache, ds, evaluated=2)


def test_nsynth_targets(tmp_path, data, pipeline, cache):
    root = tmp_path / "nsynth-test"
    notes = {
        "bass_synthetic_033-022-050": {
            "instrument_family_str": "bass",
            "instrument_source_str": "synthetic",
            "pitch": 22,
            "velocity": 50,
            "qualities_str": ["dark"],
        },
        "keyboard_acoustic_004-060-025": {
            "instrument_family_str": "keyboard",
            "instrument_source_str": "acoustic",
            "pitch": 60,
            "velocity": 25,
            "qualities_str": [],
        },
        "synth_lead_synthetic_000-069-127": {
            "instrument_family_str": "synth_lead",
            "instrument_source_str": "synthetic",
            "pitch": 69,
            "velocity": 127,
            "qualities_str": ["bright", "tempo-synced"],
        },
    }
    for (note, meta), clip in zip(sorted(notes.items()), _clips(data, "instruments", 3)):
        meta.update(note_str=note, sample_rate=16000)
        _put(clip, root / "audio" / f"{note}.wav")
    (root / "examples.json").write_text(json.dumps(notes))
    fam = load_dataset("nsynth", tmp_path)  # the folder holding nsynth-test/ also works
    assert [fam.class_names[i.labels[0]] for i in fam.items] == ["bass", "keyboard", "synth lead"]
    _check_end_to_end(pipeline, cache, fam, evaluated=3)
    pitch = load_dataset("nsynth-pitch", root)
    assert [pitch.class_names[i.labels[0]] for i in pitch.items] == ["A#0", "C4", "A4"]
    assert [load_dataset("nsynth-velocity", root).items[k].labels for k in range(3)] == [(1,), (0,), (4,)]
    assert load_dataset("nsynth-source", root).items[1].labels == (0,)
    qual = load_dataset("nsynth-qualities", root)
    assert qual.task == MULTI_LABEL and qual.items[2].labels == (0, 9) and qual.items[1].labels == ()
    assert "tempo synced" in qual.class_names and "nonlinear envelope" in qual.class_names
    _check_end_to_end(pipeline, cache, qual, evaluated=3)


# ---------------------------------------------------------------------------------- retrieval
def test_clotho(tmp_path, data, pipeline, cache):
    root = tmp_path / "clotho"
    names = ["Santa Motor.wav", "_Stream 2 at Krka falls.wav", " Ambience Birds.wav"]
    for name, clip in zip(names, _clips(data, "esc10", 3)):
        _put(clip, root / "evaluation" / name)
    _write_csv(
        root / "clotho_captions_evaluation.csv",
        ["file_name"] + [f"caption_{k}" for k in range(1, 6)],
        [[n] + [f"caption {k} of {n}" for k in range(1, 6)] for n in names + ["gone.wav"]],
    )
    ds = load_dataset("clotho", root)
    assert ds.task == RETRIEVAL and ds.split == "evaluation" and len(ds) == 4
    assert ds.items[0].path == root / "evaluation" / "Santa Motor.wav" and len(ds.items[0].captions) == 5
    result = _check_end_to_end(pipeline, cache, ds, evaluated=3, missing=1)
    assert result.num_captions == 15 and result.excluded["captions"] == 5
    assert result.heatmap.shape == (3, 3)


def test_audiocaps_finds_audio_under_common_names(tmp_path, data, pipeline, cache):
    root = tmp_path / "audiocaps"
    clips = _clips(data, "esc10", 3)
    _put(clips[0], root / "audio" / "test" / "--0w1YA1Hm4.wav")
    _put(clips[1], root / "audio" / "test" / "Y-0BIyqJj9ZU_30.000_40.000.wav")
    _put(clips[2], root / "audio" / "test" / "-0RWZT-miFs_420.wav")
    rows = []
    for k, (yid, start) in enumerate(
        [("--0w1YA1Hm4", 30), ("-0BIyqJj9ZU", 30), ("-0RWZT-miFs", 420), ("-1nilez17Dg", 30)]
    ):
        rows += [[100 + 5 * k + j, yid, start, f"caption {j} of {yid}"] for j in range(5)]
    _write_csv(root / "test.csv", ["audiocap_id", "youtube_id", "start_time", "caption"], rows)
    ds = load_dataset("audiocaps", root)
    assert len(ds) == 4 and all(len(i.captions) == 5 for i in ds.items)
    assert ds.items[1].path.name == "Y-0BIyqJj9ZU_30.000_40.000.wav"
    assert ds.items[2].path.name == "-0RWZT-miFs_420.wav"
    _check_end_to_end(pipeline, cache, ds, evaluated=3, missing=1)


# ----------------------------------------------------------------------------------- manifest
def test_manifest_csv_and_jsonl(tmp_path, data, pipeline, cache):
    clips = _clips(data, "esc10", 4)
    audio = tmp_path / "set" / "clips"
    for k, clip in enumerate(clips):
        _put(clip, audio / f"c{k}.wav")
    _write_csv(
        tmp_path / "set" / "labels.csv",
        ["path", "label", "split", "fold"],
        [[f"clips/c{k}.wav", ["Dog_Bark", "rain"][k % 2], "test", k % 2 + 1] for k in range(4)]
        + [["clips/missing.wav", "rain", "test", 1], ["clips/c0.wav", "rain", "train", 1]],
    )
    ds = Manifest().load(tmp_path / "set" / "labels.csv", split="test")
    assert (
        ds.task == SINGLE_LABEL
        and ds.classes == ["Dog_Bark", "rain"]
        and ds.class_names == ["dog bark", "rain"]
    )
    assert ds.items[0].path == audio / "c0.wav" and ds.folds == ["1", "2"] and len(ds) == 5
    _check_end_to_end(pipeline, cache, ds, evaluated=4, missing=1)

    lines = [
        {"path": str(audio / "c0.wav"), "labels": ["dog", "bark"]},
        {"path": "clips/c1.wav", "labels": "rain"},
    ]
    (tmp_path / "set" / "multi.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    multi = Manifest().load(tmp_path / "set" / "multi.jsonl")
    assert (
        multi.task == MULTI_LABEL
        and multi.classes == ["bark", "dog", "rain"]
        and multi.items[0].labels == (0, 1)
    )

    _write_csv(
        tmp_path / "set" / "caps.csv",
        ["path", "caption"],
        [["clips/c0.wav", "a dog"], ["clips/c0.wav", "barking"], ["clips/c1.wav", "rain falls"]],
    )
    caps = Manifest().load(tmp_path / "set" / "caps.csv")
    assert caps.task == RETRIEVAL and caps.items[0].captions == ("a dog", "barking")
    _check_end_to_end(pipeline, cache, caps, evaluated=2)


# ------------------------------------------------------------------------------------- errors
def test_layout_errors_name_the_file_and_the_layout(tmp_path):
    with pytest.raises(DatasetLayoutError, match=r"meta/esc50\.csv|esc50\.csv"):
        load_dataset("esc50", tmp_path)
    with pytest.raises(DatasetLayoutError, match="not a folder"):
        load_dataset("urbansound8k", tmp_path / "nope")
    with pytest.raises(ValueError, match="unknown dataset 'esc-51'.*esc50"):
        get_adapter("esc-51")
    with pytest.raises(ValueError, match="unknown split"):
        load_dataset("fsd50k", tmp_path, "bogus")
    (tmp_path / "m.csv").write_text("file,label\na.wav,x\n")
    with pytest.raises(ValueError, match="'path' column"):
        Manifest().load(tmp_path / "m.csv")


def test_registry_is_a_plain_dict_of_adapter_classes():
    assert {
        "esc50",
        "urbansound8k",
        "gtzan-genres",
        "gtzan-music-speech",
        "vocalsound",
        "crema-d",
        "ravdess",
        "tut2017",
        "fsd50k",
        "speech-commands",
        "nsynth",
        "audiocaps",
        "clotho",
    } <= set(DATASETS)
    for name, cls in DATASETS.items():
        assert cls.name == name and cls.homepage and cls.layout
    assert np.all([isinstance(get_adapter(n), DATASETS[n]) for n in DATASETS])
