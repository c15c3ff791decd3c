"""openclap.audio.windows: deterministic inference windows and seeded training crops."""

from __future__ import annotations

import math

import pytest
import torch

from openclap.audio.windows import WindowSpan, fit_to_length, random_crop, split_windows

SR = 100  # a small rate keeps the tensors tiny; the rule is rate-independent


def test_sixty_seconds_gives_seventeen_windows():
    sr = 44100
    wave = torch.arange(60 * sr, dtype=torch.float32)
    n, hop = 7 * sr, int(3.5 * sr)
    windows, spans = split_windows(wave, n, hop, "repeat", sr)
    assert windows.shape == (17, n) and len(spans) == 17
    assert spans[0] == WindowSpan(0.0, 7.0)
    assert spans[1] == WindowSpan(3.5, 10.5)
    assert spans[15] == WindowSpan(52.5, 59.5)
    assert spans[16] == WindowSpan(53.0, 60.0)  # last one shifted to end at the clip's end
    for w, s in zip(windows, spans):  # every window is real audio at its span
        assert w[0].item() == round(s.start * sr) and w[-1].item() == round(s.end * sr) - 1


@pytest.mark.parametrize("length", [701, 750, 1050, 1051, 1400, 2345])
def test_window_count_formula(length):
    n, hop = 700, 350
    windows, spans = split_windows(torch.randn(length), n, hop, "zero", SR)
    assert windows.shape[0] == 1 + math.ceil((length - n) / hop) == len(spans)
    assert spans[-1].end == pytest.approx(length / SR)
    starts = [s.start for s in spans]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)


def test_exact_fit_and_short_clips():
    wave = torch.randn(700)
    windows, spans = split_windows(wave, 700, 350, "repeat", SR)
    assert windows.shape == (1, 700) and torch.equal(windows[0], wave)
    assert spans == [WindowSpan(0.0, 7.0)]
    short = torch.randn(250)
    windows, spans = split_windows(short, 700, 350, "zero", SR)
    assert windows.shape == (1, 700)
    assert spans == [WindowSpan(0.0, 2.5)]  # the clip's real duration, not the padded one


def test_repeat_padding_tiles_the_clip():
    clip = torch.tensor([1.0, 2.0, 3.0])
    assert fit_to_length(clip, 8, "repeat").tolist() == [1, 2, 3, 1, 2, 3, 1, 2]
    assert fit_to_length(clip, 3, "repeat").tolist() == [1, 2, 3]


def test_zero_padding_and_cut():
    clip = torch.tensor([1.0, 2.0, 3.0])
    assert fit_to_length(clip, 5, "zero").tolist() == [1, 2, 3, 0, 0]
    assert fit_to_length(torch.arange(10.0), 4, "zero").tolist() == [0, 1, 2, 3]


def test_bad_arguments():
    with pytest.raises(ValueError, match="pad_mode"):
        fit_to_length(torch.ones(3), 5, "reflect")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shape"):
        fit_to_length(torch.ones(2, 3), 5)
    with pytest.raises(ValueError, match="empty"):
        split_windows(torch.ones(0), 5, 2, "zero", SR)
    with pytest.raises(ValueError, match="hop_samples"):
        split_windows(torch.ones(10), 5, 6, "zero", SR)
    with pytest.raises(TypeError, match="Generator"):
        random_crop(torch.ones(10), 5, 0, "zero")  # type: ignore[arg-type]


def test_random_crop_is_seeded_and_uniform():
    wave = torch.arange(1000.0)
    crops = [random_crop(wave, 100, torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(crops[0], crops[1])
    g = torch.Generator().manual_seed(0)
    starts = [int(random_crop(wave, 100, g)[0].item()) for _ in range(400)]
    assert min(starts) >= 0 and max(starts) <= 900
    assert len(set(starts)) > 200  # spread over the 901 positions
    g2 = torch.Generator().manual_seed(0)
    assert starts[:5] == [int(random_crop(wave, 100, g2)[0].item()) for _ in range(5)]


def test_random_crop_pads_short_clips():
    g = torch.Generator().manual_seed(0)
    clip = torch.tensor([1.0, 2.0])
    assert random_crop(clip, 5, g, "repeat").tolist() == [1, 2, 1, 2, 1]
    assert random_crop(clip, 5, g, "zero").tolist() == [1, 2, 0, 0, 0]
