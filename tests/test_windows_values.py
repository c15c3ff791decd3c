"""Window fitting by hand (every pad mode, the boundaries of every argument check, the crop's range): the
mutants of audio/windows.py that the older tests let through (scripts/mutation.sh windows)."""

from __future__ import annotations

import pytest
import torch

from openclap.audio.windows import fit_to_length, random_crop, split_windows

WAVE = torch.tensor([1.0, 2.0, 3.0])


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("repeat", [1, 2, 3, 1, 2, 3, 1, 2]),  # msclap: tile, cut
        ("zero", [1, 2, 3, 0, 0, 0, 0, 0]),
        ("repeatpad", [1, 2, 3, 1, 2, 3, 0, 0]),  # LAION: floor(8 / 3) = 2 whole copies, then zeros
    ],
)
def test_pad_modes_by_hand(mode: str, expected: list[int]) -> None:
    assert fit_to_length(WAVE, 8, mode).tolist() == expected
    windows, spans = split_windows(WAVE, 8, 4, mode, 3)
    assert windows.tolist() == [expected] and (spans[0].start, spans[0].end) == (0.0, 1.0)
    assert random_crop(WAVE, 8, torch.Generator().manual_seed(0), mode).tolist() == expected
    assert fit_to_length(WAVE, 9, "repeatpad").tolist() == [1, 2, 3] * 3


def test_defaults_and_exact_length() -> None:
    assert fit_to_length(WAVE, 7).tolist() == [1, 2, 3, 1, 2, 3, 1]  # default: repeat
    assert random_crop(WAVE, 7, torch.Generator().manual_seed(0)).tolist() == [1, 2, 3, 1, 2, 3, 1]
    assert fit_to_length(WAVE, 3, "zero").tolist() == [1, 2, 3] and fit_to_length(WAVE, 2).tolist() == [1, 2]
    # a clip of exactly the window length is used as it is, and draws nothing from the generator
    g = torch.Generator().manual_seed(5)
    before = g.get_state()
    assert random_crop(WAVE, 3, g).tolist() == [1, 2, 3] and torch.equal(g.get_state(), before)


def test_hop_boundaries() -> None:
    wave = torch.arange(10.0)
    windows, spans = split_windows(wave, 8, 1, "zero", 2)  # hop 1 is allowed
    assert windows[:, 0].tolist() == [0, 1, 2] and [s.start for s in spans] == [0.0, 0.5, 1.0]
    windows, _ = split_windows(wave, 8, 8, "zero", 2)  # hop == window is allowed
    assert windows[:, 0].tolist() == [0, 2]
    for hop in (0, 9, 2.0, True):
        with pytest.raises(ValueError, match=r"hop_samples must be an int in \[1, num_samples=8\]"):
            split_windows(wave, 8, hop, "zero", 2)  # type: ignore[arg-type]


def test_argument_checks_name_the_value() -> None:
    assert fit_to_length(WAVE, 1).tolist() == [1.0]  # one sample is a valid length
    assert split_windows(WAVE, 3, 1, "zero", 1)[1][0].end == 3.0  # 1 Hz is a valid rate
    for n in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="num_samples must be a positive int"):
            fit_to_length(WAVE, n)  # type: ignore[arg-type]
    for rate in (0, -5, 16000.0, True):
        with pytest.raises(ValueError, match="sample_rate must be a positive int"):
            split_windows(WAVE, 8, 4, "zero", rate)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"wave is empty \(0 samples\)"):
        fit_to_length(torch.zeros(0), 4)
    with pytest.raises(TypeError, match="wave must be a torch.Tensor, got list"):
        fit_to_length([1.0, 2.0], 4)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pad_mode must be 'repeat', 'zero' or 'repeatpad', got 'REPEATPAD'"):
        fit_to_length(WAVE, 4, "REPEATPAD")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="generator must be a torch.Generator.*got int"):
        random_crop(WAVE, 2, 0)  # type: ignore[arg-type]


def test_random_crop_covers_every_start_and_only_those() -> None:
    wave = torch.arange(6.0)
    g = torch.Generator().manual_seed(0)
    starts = {int(random_crop(wave, 4, g)[0]) for _ in range(200)}
    assert starts == {0, 1, 2}  # L - N + 1 = 3 positions, the first and the last included
    crops = [random_crop(wave, 5, g) for _ in range(50)]
    assert {int(c[0]) for c in crops} == {0, 1} and all(len(c) == 5 for c in crops)
