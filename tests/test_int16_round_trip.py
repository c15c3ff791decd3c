"""laion_clap rounds every input waveform through int16 before its front end; the LAION presets do the same
(``FrontendConfig.int16_round_trip``), the others do not."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from openclap.audio.frontend import LogMelFrontend, int16_round_trip
from openclap.registry import get_model_config, list_models


def _laion_round_trip(x: np.ndarray) -> np.ndarray:
    """laion_clap's ``int16_to_float32(float32_to_int16(x))`` restated in numpy (its hook.py quantize step)."""
    q = (np.clip(x, a_min=-1.0, a_max=1.0) * 32767.0).astype(np.int16)
    return (q / 32767.0).astype(np.float32)


@pytest.fixture(scope="module")
def wave() -> np.ndarray:
    """Seeded noise beyond [-1, 1] at the edges, plus exact int16/32768 values as a 16-bit file decodes."""
    g = np.random.default_rng(0)
    x = (0.4 * g.standard_normal(48000)).astype(np.float32)
    x[:6] = [1.0, -1.0, 1.7, -1.3, 32767 / 32768, -32768 / 32768]
    x[6:1006] = g.integers(-32768, 32768, 1000) / 32768  # decoded PCM_16: still changed by the round trip
    return x


def test_round_trip_equals_laion_quantisation(wave: np.ndarray) -> None:
    ours = int16_round_trip(torch.from_numpy(wave)).numpy()
    assert ours.dtype == np.float32 and np.array_equal(ours, _laion_round_trip(wave))
    assert not np.array_equal(ours[6:1006], wave[6:1006])  # a PCM_16 file is not a fixed point


def test_frontend_option_applies_exactly_the_round_trip(wave: np.ndarray) -> None:
    cfg = get_model_config("laion-htsat-tiny-roberta").audio.frontend
    assert cfg.int16_round_trip
    plain = LogMelFrontend(dataclasses.replace(cfg, int16_round_trip=False))
    with torch.no_grad():
        on = LogMelFrontend(cfg)(torch.from_numpy(wave)[None])
        expected = plain(torch.from_numpy(_laion_round_trip(wave))[None])
        off = plain(torch.from_numpy(wave)[None])
    assert torch.equal(on, expected)
    assert (on - off).abs().max().item() > 1e-3


def test_round_trip_is_on_for_laion_presets_only() -> None:
    flags = {name: get_model_config(name).audio.frontend.int16_round_trip for name in list_models()}
    assert {n for n, on in flags.items() if on} == {n for n in flags if n.startswith("laion-")}
    assert any(n.startswith("laion-") for n in flags) and not all(flags.values())
