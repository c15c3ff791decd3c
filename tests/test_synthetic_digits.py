"""scripts/make_synthetic_digits.py: espeak-ng digits as a training manifest (deterministic, split by voice),
and espeak-ng's speed and pitch settings measured on what it wrote. Needs the espeak-ng program (a system
package, not data): .ci/run installs it and, with CI set, a missing espeak-ng fails these tests; on a machine
without it they skip, saying how to install it, so the README's two-command set-up stays true everywhere."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from openclap.audio.io import load_audio
from openclap_train.config import ManifestSpec
from openclap_train.data import read_manifest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "make_synthetic_digits.py"
needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None and not os.environ.get("CI"),
    reason="espeak-ng is not installed (Debian/Ubuntu: apt-get install -y espeak-ng); CI installs it",
)


def _module():
    spec = importlib.util.spec_from_file_location("make_synthetic_digits", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def _run(out: Path) -> dict[str, str]:
    args = [
        str(out),
        "--variants",
        "m3",
        "f2",
        "--accents",
        "en-us",
        "en-gb-scotland",
        "--val-variants",
        "f2",
        "--digits",
        "3",
        "7",
        "--takes",
        "1",
    ]
    assert _module().main(args) == 0
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.rglob("*")) if p.is_file()}


@needs_espeak
def test_manifest_is_deterministic_split_by_voice_and_readable(tmp_path):
    first, second = _run(tmp_path / "a"), _run(tmp_path / "b")
    assert first == second and len(first) == 5  # 4 clips + manifest, byte for byte the same
    with open(tmp_path / "a" / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    fsdd_columns = ["path", "caption", "label", "source_id", "split", "speaker", "digit", "take"]
    assert list(rows[0])[: len(fsdd_columns)] == fsdd_columns
    assert {(r["speaker"], r["split"]) for r in rows} == {("m3", "train"), ("f2", "val")}
    assert sorted(r["label"] for r in rows) == ["seven", "seven", "three", "three"]
    assert all(r["label"] in r["caption"] for r in rows)
    train = read_manifest(ManifestSpec(path=str(tmp_path / "a" / "manifest.csv"), split="train"))
    assert [Path(s.path).name for s in train] == ["3_m3_0.flac", "7_m3_0.flac"]
    for s in train:
        wave = load_audio(s.path, 16000)
        assert 0.2 < wave.shape[0] / 16000 < 1.5  # one trimmed word


def _f0(wave: np.ndarray, rate: int = 16000) -> float:
    """Median autocorrelation pitch (60-400 Hz) of the loud 40 ms frames."""
    hop, size = 160, 640
    f0s = []
    loud = np.max([np.mean(wave[i : i + size] ** 2) for i in range(0, len(wave) - size, hop)])
    for i in range(0, len(wave) - size, hop):
        frame = wave[i : i + size]
        if np.mean(frame**2) < 0.1 * loud:
            continue
        ac = np.correlate(frame, frame, "full")[size - 1 :]
        lags = np.arange(rate // 400, rate // 60)
        f0s.append(rate / lags[np.argmax(ac[lags])])
    return float(np.median(f0s))


@needs_espeak
def test_speed_and_pitch_settings_change_duration_and_f0():
    mod = _module()
    clip = mod.Clip("m3", 7, 0, "en-us", 175, 50, "", "train")
    slow, fast = mod.synthesise(clip, speed=110), mod.synthesise(clip, speed=260)
    assert fast.shape[0] < 0.75 * slow.shape[0]
    low, high = _f0(mod.synthesise(clip, pitch=10)), _f0(mod.synthesise(clip, pitch=90))
    assert high > 1.3 * low
    # silence trimmed to the word: loud 10 ms frames (within 40 dB of the loudest) reach both padded ends
    wave = mod.synthesise(clip)
    level = 10 * np.log10(
        np.maximum(wave[: len(wave) // 160 * 160].reshape(-1, 160).__pow__(2).mean(1), 1e-12)
    )
    loud = np.flatnonzero(level > level.max() - 40)
    assert (
        loud[0] <= 4 and loud[-1] >= len(level) - 5
    )  # within the 30 ms pads (espeak-ng adds ~300 ms at the end)


def test_missing_espeak_is_a_clear_error(tmp_path, monkeypatch):
    mod = _module()
    monkeypatch.setattr(mod.shutil, "which", lambda name: None)
    with pytest.raises(SystemExit, match="apt-get install -y espeak-ng"):
        mod.main([str(tmp_path / "out"), "--variants", "m3"])


@needs_espeak
def test_espeak_is_installed():
    # CI installs it (.ci/run); without it the two tests above would fail with a less direct message
    assert subprocess.run(["espeak-ng", "--version"], capture_output=True, check=False).returncode == 0
