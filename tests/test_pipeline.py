"""The Python API on real clips: determinism, batching, downmix, resampling, windows, errors."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import openclap
from openclap.audio.io import AudioLoadError
from openclap.text.tokenizer import TextInputError


@pytest.fixture(scope="module")
def tiny() -> openclap.ClapPipeline:
    return openclap.load("tiny")


def _rows(root: Path, name: str) -> list[dict[str, str]]:
    with open(root / name / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def esc_files(shared_data: Path) -> list[Path]:
    rows = _rows(shared_data, "esc10")
    return [shared_data / "esc10" / r["path"] for r in rows[:8]]


def test_list_models_and_unknown_name() -> None:
    names = openclap.list_models()
    assert {"tiny", "msclap-2023", "msclap-2022"} <= set(names)
    with pytest.raises(ValueError, match="known models: .*msclap-2023"):
        openclap.load("no-such-model")


def test_embeddings_are_normalised_and_deterministic(tiny, esc_files) -> None:
    a = tiny.embed_audio(esc_files[:3])
    b = tiny.embed_audio(esc_files[:3])
    assert a.shape == (3, tiny.config.embed_dim) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(a, b), "the same files must embed to bit-identical vectors"
    # A fresh load of the same preset gives the same (seeded) model.
    c = openclap.load("tiny").embed_audio(esc_files[:3])
    assert np.array_equal(a, c)


def test_batch_size_does_not_change_embeddings(tiny, esc_files) -> None:
    one = np.stack([tiny.embed_audio(f, batch_size=1)[0] for f in esc_files])
    eight = tiny.embed_audio(esc_files, batch_size=8)
    assert np.abs(one - eight).max() <= 1e-5


def test_stereo_equals_mono_downmix(tiny, esc_files, tmp_path) -> None:
    left, rate = sf.read(esc_files[0], dtype="float32")
    right, _ = sf.read(esc_files[1], dtype="float32")
    n = min(len(left), len(right))
    stereo = np.stack([left[:n], right[:n]], axis=1)
    sf.write(tmp_path / "stereo.wav", stereo, rate, subtype="FLOAT")
    sf.write(tmp_path / "mono.wav", stereo.mean(axis=1), rate, subtype="FLOAT")
    e = tiny.embed_audio([tmp_path / "stereo.wav", tmp_path / "mono.wav"])
    assert np.abs(e[0] - e[1]).max() <= 1e-6


def test_8khz_file_is_resampled(tiny, shared_data) -> None:
    row = _rows(shared_data, "fsdd")[0]
    path = shared_data / "fsdd" / row["path"]
    assert sf.info(path).samplerate == 8000
    wave, rate = sf.read(path, dtype="float32")
    from_file = tiny.embed_audio(path)
    from_array = tiny.embed_audio(wave, sample_rate=rate)
    assert np.abs(from_file - from_array).max() <= 1e-6
    [result] = tiny.embed_audio(path, return_windows=True)
    assert math.isclose(result.duration, len(wave) / rate, rel_tol=1e-3)


def test_long_file_is_windowed(tiny, esc_files, tmp_path) -> None:
    rate = 16000
    clips = [sf.read(f, dtype="float32")[0] for f in esc_files]
    sixty = np.concatenate(clips * 2)[: 60 * rate]
    assert len(sixty) == 60 * rate
    sf.write(tmp_path / "long.flac", sixty, rate)
    [result] = tiny.embed_audio(tmp_path / "long.flac", return_windows=True)
    dur, hop = tiny.config.audio.duration, tiny.config.audio.hop_seconds
    expected = 1 + math.ceil((60 - dur) / hop)  # documented in openclap.audio.windows
    assert len(result.spans) == expected == result.window_embeddings.shape[0]
    assert result.spans[0].start == 0 and math.isclose(result.spans[-1].end, 60.0, abs_tol=1e-6)
    mean = result.window_embeddings.mean(axis=0)
    np.testing.assert_allclose(result.embedding, mean / np.linalg.norm(mean), atol=1e-6)


def test_similarity_and_classify(tiny, esc_files) -> None:
    a = tiny.embed_audio(esc_files[:2])
    t = tiny.embed_text(["a dog barking", "rain falling"])
    s = tiny.similarity(a, t)
    assert s.shape == (2, 2)
    np.testing.assert_allclose(s, a @ t.T, atol=1e-6)
    results = tiny.classify(esc_files[:2], labels=["dog", "rain", "crying baby"], top_k=2)
    assert [len(r.labels) for r in results] == [2, 2]
    for r in results:
        assert r.scores[0] >= r.scores[1] and 0 < sum(r.scores) <= 1.0 + 1e-6
    # The classification agrees with the raw similarities.
    prompts = tiny.embed_text([f"this is the sound of {x}" for x in ["dog", "rain", "crying baby"]])
    best = np.argmax(a @ prompts.T, axis=1)
    assert [r.label for r in results] == [["dog", "rain", "crying baby"][i] for i in best]


def test_text_embeddings_ignore_batch_padding(tiny) -> None:
    texts = ["a dog", "a much longer caption about a dog barking loudly in the rain at night"]
    together = tiny.embed_text(texts)
    alone = np.concatenate([tiny.embed_text(t) for t in texts])
    assert np.abs(together - alone).max() <= 1e-5


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda d: d / "missing.wav", "not found"),
        (lambda d: _write(d / "empty.wav", b""), "empty"),
        (lambda d: _write(d / "noise.wav", np.random.default_rng(0).bytes(4096)), "format|corrupt"),
    ],
    ids=["missing", "zero-bytes", "random-bytes"],
)
def test_bad_files_raise_naming_the_file(tiny, tmp_path, make, match) -> None:
    path = make(tmp_path)
    assert isinstance(path, Path)
    with pytest.raises(AudioLoadError, match=match) as info:
        tiny.embed_audio(path)
    assert path.name in str(info.value)


def test_silent_and_nan_inputs_are_errors(tiny, tmp_path) -> None:
    sf.write(tmp_path / "silence.wav", np.zeros(16000, np.float32), 16000)
    with pytest.raises(AudioLoadError, match="silence.wav"):
        tiny.embed_audio(tmp_path / "silence.wav")
    with pytest.raises(AudioLoadError):
        tiny.embed_audio(np.full(16000, np.nan, np.float32), sample_rate=16000)
    with pytest.raises(ValueError, match="sample_rate"):
        tiny.embed_audio(np.ones(16000, np.float32))


def test_bad_labels_and_texts(tiny, esc_files) -> None:
    with pytest.raises(ValueError, match="at least one label"):
        tiny.classify(esc_files[:1], labels=[])
    with pytest.raises(TextInputError):
        tiny.embed_text([""])
    with pytest.raises(TextInputError):
        tiny.embed_text([])
    with pytest.raises(ValueError, match="template"):
        tiny.classify(esc_files[:1], labels=["dog"], template="no placeholder")


def test_classify_skip_keeps_good_results(tiny, esc_files, tmp_path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really")
    results = tiny.classify([esc_files[0], bad, esc_files[1]], labels=["dog", "rain"], on_error="skip")
    assert [r.error is None for r in results] == [True, False, True]
    assert "bad.wav" in results[1].error


def test_save_pretrained_round_trip(tiny, esc_files, tmp_path) -> None:
    out = tiny.save_pretrained(tmp_path / "model")
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    again = openclap.load(out)
    assert np.array_equal(again.embed_audio(esc_files[:2]), tiny.embed_audio(esc_files[:2]))
    assert np.array_equal(again.embed_text(["a dog"]), tiny.embed_text(["a dog"]))


def test_model_forward_output(tiny) -> None:
    torch.manual_seed(0)
    wave = torch.randn(2, tiny.config.audio.num_samples) * 0.1
    tokens = tiny.tokenizer(["a dog", "rain"])
    with torch.no_grad():
        out = tiny.model(wave, tokens["input_ids"], tokens["attention_mask"])
        audio = tiny.model.encode_audio(wave)
        text = tiny.model.encode_text(tokens["input_ids"], tokens["attention_mask"])
    assert out.audio_embeds.shape == out.text_embeds.shape == (2, tiny.config.embed_dim)
    assert torch.equal(out.audio_embeds, audio) and torch.equal(out.text_embeds, text)
    scale = tiny.model.logit_scale.exp().clamp(max=100.0)
    assert float(scale) > 2 and torch.equal(out.logit_scale, scale)
    # rows are clips, columns captions, scaled: exactly scale * a @ t.T (not its transpose, not unscaled)
    assert torch.equal(out.logits_per_audio, scale * audio @ text.T)
    assert not torch.allclose(out.logits_per_audio, out.logits_per_audio.T)
