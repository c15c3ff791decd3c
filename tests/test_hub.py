"""Offline-first hub resolution: a pre-populated huggingface_hub cache with HF_HUB_OFFLINE=1 is found by
`openclap.load(preset)`; an empty cache fails fast with a message naming the file and --checkpoint."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from test_convert import _randomised_tiny, msclap_style_state_dict

import openclap
from openclap import pretrained
from openclap.hub import CheckpointUnavailableError, TokenizerUnavailableError, resolve_tokenizer
from openclap.pretrained import PretrainedBundle
from openclap.registry import get_model_config

REPO_ID = "openclap-test/tiny-clap"
FILENAME = "tiny_msclap.pth"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def populate_hub_cache(cache: Path, repo_id: str, files: dict[str, bytes]) -> None:
    """Write files in huggingface_hub's cache layout: models--org--name/{refs/main, snapshots/<commit>/...}."""
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(COMMIT)
    for name, data in files.items():
        (snapshot / name).write_bytes(data)


@pytest.fixture()
def tiny_bundle(monkeypatch: pytest.MonkeyPatch) -> PretrainedBundle:
    """Published weights for the `tiny` preset (msclap format), as msclap-2023 has on microsoft/msclap."""
    bundle = PretrainedBundle(
        model="tiny", repo_id=REPO_ID, filename=FILENAME, format="msclap", sample_rate=16000, duration=5.0,
        licence="test", reported="-",
    )  # fmt: skip
    monkeypatch.setitem(pretrained.PRETRAINED, "tiny", bundle)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return bundle


def test_offline_cache_is_found(
    tiny_bundle: PretrainedBundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _randomised_tiny(seed=5)
    weights = tmp_path / "w.pth"
    torch.save({"model": msclap_style_state_dict(model)}, weights)
    cache = tmp_path / "hub"
    populate_hub_cache(cache, REPO_ID, {FILENAME: weights.read_bytes()})
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))

    pipe = openclap.load("tiny")  # no checkpoint: the bundle's file, from the cache, offline
    reference = openclap.pipeline.ClapPipeline(model, pipe.tokenizer)
    texts = ["a dog barks", "rain"]
    np.testing.assert_array_equal(pipe.embed_text(texts), reference.embed_text(texts))
    wave = np.random.default_rng(0).uniform(-0.5, 0.5, 16000 * 5).astype(np.float32)
    np.testing.assert_array_equal(
        pipe.embed_audio(wave, sample_rate=16000), reference.embed_audio(wave, sample_rate=16000)
    )


def test_empty_cache_fails_fast_naming_the_file(
    tiny_bundle: PretrainedBundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    start = time.monotonic()
    with pytest.raises(CheckpointUnavailableError) as err:
        openclap.load("tiny")
    assert time.monotonic() - start < 10
    msg = str(err.value)
    assert FILENAME in msg and REPO_ID in msg
    assert "checkpoint=PATH" in msg and "--checkpoint PATH" in msg
    # Explicit weights need no hub at all.
    assert openclap.load("tiny", pretrained=False) is not None


def test_msclap_2023_bundle_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real bundle: no cache, offline -> the message names CLAP_weights_2023.pth (before building the model)."""
    from openclap.hub import download_checkpoint

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(
        CheckpointUnavailableError, match=r"CLAP_weights_2023\.pth.*microsoft/msclap.*--checkpoint"
    ):
        download_checkpoint(pretrained.get_bundle("msclap-2023"))


def test_tokenizer_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bundled and local tokenizers need no hub; roberta-base comes from the hub cache, else a clear error."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert resolve_tokenizer(get_model_config("msclap-2023").text) is None  # bundled GPT-2
    laion = get_model_config("laion-htsat-tiny-roberta").text
    with pytest.raises(TokenizerUnavailableError, match=r"roberta-base.*vocab\.json.*--tokenizer DIR"):
        resolve_tokenizer(laion)
    populate_hub_cache(tmp_path / "hub", "FacebookAI/roberta-base", {"vocab.json": b"{}", "merges.txt": b""})
    found = resolve_tokenizer(laion)
    assert found is not None and (found / "vocab.json").is_file() and (found / "merges.txt").is_file()


def test_unreachable_hub_fails_fast(
    tiny_bundle: PretrainedBundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Network allowed but the hub unreachable (a closed loopback port stands in): no retries, same message."""
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    start = time.monotonic()
    with pytest.raises(CheckpointUnavailableError, match=r"not reachable.*--checkpoint PATH"):
        openclap.load("tiny")
    assert time.monotonic() - start < 10
