"""scripts/make_timbre_variants.py: held-out timbre variants of validation notes (pitch shift, body
resonances, Schroeder reverberator), each measured on a bundled FluidR3 note; deterministic output."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import openclap
from openclap.audio.io import load_audio

REPO = Path(__file__).resolve().parents[1]
DEMO = Path(openclap.__file__).parent / "assets" / "demo"
VIOLIN = "fluidr3_p040_violin_m071_v110.flac"  # B4, 493.9 Hz
RATE = 16000


@pytest.fixture(scope="module")
def mod():
    spec = importlib.util.spec_from_file_location(
        "make_timbre_variants", REPO / "scripts" / "make_timbre_variants.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


def test_peaking_filter_and_schroeder_reverberator_do_what_they_say(mod):
    freqs = torch.tensor([100.0, 1000.0, 7000.0])
    r = mod.peaking_response(freqs, RATE, 1000.0, 2.0, 9.0)
    assert 20 * math.log10(float(r[1])) == pytest.approx(9.0, abs=1e-6)  # the gain at the centre
    assert (
        20 * math.log10(float(r[0])) == pytest.approx(0.0, abs=0.3)
        and abs(20 * math.log10(float(r[2]))) < 0.3
    )
    ir = mod.schroeder_ir(RATE, 0.8, seconds=1.6)
    edc = np.cumsum((ir**2)[::-1])[::-1]
    edc_db = 10 * np.log10(edc / edc[0])
    t = np.arange(len(ir)) / RATE
    sel = (edc_db < -5) & (edc_db > -35)
    rt60 = -60 / np.polyfit(t[sel], edc_db[sel], 1)[0]
    assert rt60 == pytest.approx(0.8, rel=0.1)
    assert np.abs(ir[: int(0.0297 * RATE)]).max() < 1e-12  # silent before the shortest comb's first echo


def test_variants_are_deterministic_and_shift_the_pitch_they_report(tmp_path, mod):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "val_manifest": [
                    {"path": str(DEMO / "manifest.csv"), "name": "notes", "include": {"path": [VIOLIN]}}
                ]
            }
        )
    )
    hashes = []
    for out in (tmp_path / "a", tmp_path / "b"):
        assert mod.main([str(out), "--recipe", str(recipe), "--val", "notes", "--variants", "2"]) == 0
        hashes.append({p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.rglob("*.*"))})
    assert hashes[0] == hashes[1] and len(hashes[0]) == 3
    with open(tmp_path / "a" / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["split"] for r in rows] == ["val", "val"] and all(r["label"] == "violin" for r in rows)
    for row in rows:
        wave = torch.from_numpy(load_audio(tmp_path / "a" / row["path"], RATE))
        expected = 493.9 * 2 ** (float(row["semitones"]) / 12)
        spec = torch.fft.rfft(wave.double()).abs()
        f = torch.fft.rfftfreq(wave.shape[0], 1 / RATE, dtype=torch.float64)
        band = (f > 493.9 * 0.7) & (f < 493.9 * 1.4)  # around the fundamental, shifted up to 4 semitones
        assert float(f[band][spec[band].argmax()]) == pytest.approx(expected, rel=0.01)
    with pytest.raises(SystemExit, match="no validation set named"):
        mod.main([str(tmp_path / "c"), "--recipe", str(recipe), "--val", "instruments-val"])
