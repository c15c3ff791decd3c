"""Training augmentation (openclap_train.augment): each transform measured on a real bundled clip, the
random driver's determinism and off switches, and the dataset hook (draw order of old recipes kept)."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import openclap
from openclap.audio.frontend import LogMelFrontend, mel_filterbank
from openclap.audio.io import load_audio
from openclap.audio.windows import random_crop
from openclap.factory import get_model_config
from openclap_train.augment import (
    apply_gain,
    apply_reverb,
    augment_wave,
    band_limit,
    change_speed,
    eq_centres,
    equalize,
    mask_frequency,
    mask_time,
    mix_at_snr,
    mu_law,
    resample_down_up,
    room_impulse_response,
    time_shift,
)
from openclap_train.config import AugmentConfig, TrainConfigError, build, load_config
from openclap_train.data import ManifestDataset, Sample, read_train_manifests, sample_seed

DEMO = Path(openclap.__file__).parent / "assets" / "demo"
RATE = 16000


def clip(name: str) -> torch.Tensor:
    return torch.from_numpy(load_audio(DEMO / name, RATE))


DOG, RAIN, DIGIT = "4-183992-A-dog.flac", "4-160999-A-rain.flac", "7_theo_0.flac"
VIOLIN = "fluidr3_p040_violin_m071_v110.flac"


def db(ratio: torch.Tensor | float) -> float:
    return 10 * math.log10(float(ratio))


def power(x: torch.Tensor) -> torch.Tensor:
    return x.double().pow(2).mean()


def spectrum(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(frequencies in Hz, power) of the whole clip."""
    return torch.fft.rfftfreq(x.shape[0], 1 / RATE, dtype=torch.float64), torch.fft.rfft(
        x.double()
    ).abs().pow(2)


def band_energy(x: torch.Tensor, low: float, high: float) -> float:
    f, p = spectrum(x)
    return float(p[(f >= low) & (f <= high)].sum())


def peak_hz(x: torch.Tensor) -> float:
    f, p = spectrum(x)
    return float(f[p.argmax()])


def schroeder_rt60(x: torch.Tensor, top_db: float = -5.0, bottom_db: float = -35.0) -> float:
    """RT60 from the Schroeder backward-integrated energy decay curve, fitted between top and bottom dB."""
    edc = torch.flip(torch.cumsum(torch.flip(x.double().pow(2), [0]), 0), [0])
    edc_db = 10 * torch.log10(edc / edc[0])
    sel = (edc_db <= top_db) & (edc_db >= bottom_db)
    t = torch.arange(x.shape[0], dtype=torch.float64)[sel] / RATE
    y = edc_db[sel]
    slope = float(((t - t.mean()) * (y - y.mean())).sum() / ((t - t.mean()) ** 2).sum())  # dB per second
    return -60.0 / slope


def test_gain_and_time_shift_measured_on_a_real_clip():
    dog = clip(DOG)
    for gain in (-5.5, 0.0, 4.25):
        assert db(power(apply_gain(dog, gain)) / power(dog)) == pytest.approx(gain, abs=1e-4)
    shifted = time_shift(dog, 1234)
    xcorr = torch.fft.irfft(
        torch.fft.rfft(shifted.double()) * torch.fft.rfft(dog.double()).conj(), dog.shape[0]
    )
    assert int(xcorr.argmax()) == 1234  # circular cross-correlation peaks at the shift
    assert torch.equal(shifted[1234:], dog[:-1234]) and torch.equal(shifted[:1234], dog[-1234:])


def test_speed_scales_pitch_and_length_of_a_real_note():
    violin = clip(VIOLIN)  # B4, 494 Hz
    f0 = peak_hz(violin)
    assert f0 == pytest.approx(493.9, abs=2)
    for factor in (0.9, 1.12):
        fast = change_speed(violin, RATE, factor)
        assert fast.shape[0] == round(violin.shape[0] / factor)
        assert peak_hz(fast) / f0 == pytest.approx(factor, rel=2e-3)


def test_background_noise_is_mixed_at_the_requested_snr():
    digit, rain = clip(DIGIT), clip(RAIN)[: clip(DIGIT).shape[0]]
    for snr in (0.0, 7.5, 20.0):
        mixed = mix_at_snr(digit, rain, snr)
        residual = mixed - digit
        assert db(power(digit) / power(residual)) == pytest.approx(snr, abs=1e-3)
        # what was added is the rain itself, scaled: correlation 1
        assert float(torch.corrcoef(torch.stack([residual, rain]))[0, 1]) == pytest.approx(1.0, abs=1e-6)


def test_room_impulse_response_decays_by_its_rt60_and_reverb_keeps_the_level():
    g = torch.Generator().manual_seed(0)
    for rt60, drr in ((0.3, 6.0), (0.8, -2.0)):
        ir = room_impulse_response(RATE, rt60, drr, g)
        assert ir[0] == 1.0 and ir.shape[0] == math.ceil(RATE * rt60) + 1
        assert db(1.0 / ir[1:].double().pow(2).sum()) == pytest.approx(drr, abs=1e-4)  # direct vs tail energy
        assert schroeder_rt60(ir[1:]) == pytest.approx(rt60, rel=0.08)
    # on a real clip: a spoken digit followed by 1 s of silence rings on, and the ring decays at the room's RT60
    digit = clip(DIGIT)
    padded = torch.cat([digit, torch.zeros(RATE)])
    wet = apply_reverb(padded, room_impulse_response(RATE, 0.6, 0.0, torch.Generator().manual_seed(1)))
    assert db(power(wet) / power(padded)) == pytest.approx(0.0, abs=1e-4)  # level restored
    tail = wet[digit.shape[0] :]
    assert float(power(tail[:1600])) > 1e-3 * float(power(wet))  # energy where the dry clip is silent
    assert schroeder_rt60(tail, -5.0, -25.0) == pytest.approx(0.6, rel=0.15)


def test_eq_scales_each_band_by_its_gain():
    rain = clip(RAIN)  # broadband
    gains = [6.0, -6.0, 3.0, 0.0, -4.5, 5.0]
    f, p_in = spectrum(rain)
    p_out = spectrum(equalize(rain, RATE, gains))[1]
    for centre, gain in zip(eq_centres(RATE, len(gains)).tolist(), gains):
        band = (f >= centre * 0.99) & (f <= centre * 1.01)  # narrow: the response is almost flat across it
        assert db(p_out[band].sum() / p_in[band].sum()) == pytest.approx(gain, abs=0.25)
    assert eq_centres(RATE, 6)[0] == pytest.approx(100.0) and eq_centres(RATE, 6)[-1] == pytest.approx(6400.0)


def test_band_limit_removes_energy_outside_the_band_and_keeps_the_inside():
    rain = clip(RAIN)
    total = band_energy(rain, 0, RATE / 2)
    assert band_energy(rain, 3000, RATE / 2) > 0.05 * total and band_energy(rain, 0, 400) > 1e-3 * total
    out = band_limit(rain, RATE, lowpass_hz=3000.0, highpass_hz=400.0)
    assert band_energy(out, 3000.5, RATE / 2) < 1e-12 * total
    assert band_energy(out, 0, 399.5) < 1e-12 * total
    f, p_in = spectrum(rain)
    _, p_out = spectrum(out)
    inside = (f > 400 * 1.15 + 1) & (f < 3000 * 0.85 - 1)
    assert torch.allclose(p_out[inside], p_in[inside], rtol=1e-4)


def test_codec_degradations_mu_law_and_resampling():
    snrs = []
    for name in (DOG, RAIN, DIGIT, VIOLIN):
        x = clip(name)
        y = mu_law(x, 8)
        assert torch.unique(y).numel() <= 256
        snrs.append(db(power(x) / power(y - x)))
        peak = x.abs().max()
        linear = torch.round(x / peak * 127.5) / 127.5 * peak
        if name == DOG:  # a peaky clip: mu-law keeps the quiet samples better than 8-bit linear
            assert snrs[-1] > db(power(x) / power(linear - x)) + 4
    # G.711's SNR hardly depends on the signal (about 38 dB)
    assert min(snrs) > 36 and max(snrs) < 40
    assert torch.unique(mu_law(clip(DOG), 4)).numel() <= 16
    rain = clip(RAIN)
    narrow = resample_down_up(rain, RATE, 8000)
    assert narrow.shape == rain.shape
    assert band_energy(narrow, 4100, RATE / 2) < 1e-5 * band_energy(rain, 4100, RATE / 2)
    assert band_energy(narrow, 0, 3000) == pytest.approx(band_energy(rain, 0, 3000), rel=1e-3)


def test_spec_masks_zero_their_span_and_band_in_the_model_front_end():
    audio = get_model_config("small").audio
    frontend = LogMelFrontend(audio.frontend)
    rain = clip(RAIN)[: audio.num_samples]
    hop = audio.frontend.hop_length
    masked = mask_time(rain, 10 * hop, 20 * hop)
    assert torch.count_nonzero(masked[10 * hop : 30 * hop]) == 0
    assert torch.equal(masked[: 10 * hop], rain[: 10 * hop]) and torch.equal(
        masked[30 * hop :], rain[30 * hop :]
    )
    mel = frontend(masked[None])[0]  # (frames, mels)
    floor = frontend(torch.zeros(1, rain.shape[0]))[0].max()
    inner = mel[12:29]  # frames whose window lies inside the silenced span
    assert torch.all(inner <= floor + 1e-3) and float(mel[40:].mean()) > float(floor) + 30

    low, high = 1500.0, 3500.0
    removed = mask_frequency(rain, RATE, low, high)
    f, p = spectrum(removed)
    assert float(p[(f >= low) & (f <= high)].max()) < 1e-12 * float(spectrum(rain)[1].max())
    keep = (f < low - 1) | (f > high + 1)
    p_rain = spectrum(rain)[1]
    assert float((p[keep] - p_rain[keep]).abs().max()) < 1e-5 * float(p_rain.max())  # float32 rounding only
    # mel bins whose filter lies inside the band lose > 30 dB; bins well outside it are unchanged
    fb = torch.from_numpy(
        mel_filterbank(
            RATE,
            audio.frontend.n_fft,
            audio.frontend.n_mels,
            audio.frontend.f_min,
            audio.frontend.f_max,
            mel_scale=audio.frontend.mel_scale,
            norm=audio.frontend.mel_norm,
        )
    )
    bins = torch.fft.rfftfreq(audio.frontend.n_fft, 1 / RATE, dtype=torch.float64)
    support = [bins[fb[:, m] > 0] for m in range(fb.shape[1])]
    inside = [m for m, s in enumerate(support) if s.min() > low + 50 and s.max() < high - 50]
    outside = [m for m, s in enumerate(support) if s.max() < low - 100 or s.min() > high + 100]
    assert len(inside) >= 3
    before, after = frontend(rain[None])[0], frontend(removed[None])[0]
    assert float((before[:, inside] - after[:, inside]).mean()) > 30
    # the band is removed from the whole clip's (circular) spectrum: away from the clip's two ends, where
    # the removed band's ringing wraps around (this clip fades in from -83 dB), the other bins are unchanged
    assert float((before[3:-3, outside] - after[3:-3, outside]).abs().max()) < 0.01


ALL_ON = {
    "gain_db": 6.0,
    "time_shift": 0.2,
    "speed_prob": 1.0,
    "noise_prob": 1.0,
    "reverb_prob": 1.0,
    "eq_prob": 1.0,
    "bandlimit_prob": 1.0,
    "codec_prob": 1.0,
    "freq_masks": 2,
    "time_masks": 2,
}


def test_driver_is_a_function_of_the_generator_and_reports_what_it_drew():
    cfg = AugmentConfig(**ALL_ON)
    digit, noise = clip(DIGIT), clip(RAIN)[: clip(DIGIT).shape[0]]
    runs = []
    for seed in (3, 3, 4):
        trace: list = []
        g = torch.Generator().manual_seed(seed)
        runs.append((augment_wave(digit, cfg, g, rate=RATE, noise=noise, trace=trace), trace))
    assert torch.equal(runs[0][0], runs[1][0]) and runs[0][1] == runs[1][1]
    assert not torch.equal(runs[0][0], runs[2][0])
    names = [name for name, _ in runs[0][1]]
    assert names[:2] == ["reverb", "noise"] and names[2:4] == ["eq", "bandlimit"]
    assert names[4] in ("mulaw", "resample") and names[5:7] == ["gain", "shift"]
    assert names[7:] == ["freq_mask", "freq_mask", "time_mask", "time_mask"]
    params = dict(runs[0][1][:7])
    assert 0.2 <= params["reverb"]["rt60"] <= 1.0 and 5 <= params["noise"]["snr_db"] <= 30
    assert all(-6 <= gain <= 6 for gain in params["eq"]["gains_db"])
    assert 3000 <= params["bandlimit"]["lowpass_hz"] <= 7500 and abs(params["gain"]["gain_db"]) <= 6
    # off switches draw nothing: the default config returns the clip and leaves the generator untouched
    g = torch.Generator().manual_seed(0)
    assert torch.equal(augment_wave(digit, AugmentConfig(), g), digit)
    assert torch.equal(torch.rand(3, generator=g), torch.rand(3, generator=torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="rate"):
        augment_wave(digit, AugmentConfig(reverb_prob=1.0), g)


def _samples() -> list[Sample]:
    return [Sample(str(DEMO / name), name, name) for name in (DOG, RAIN, DIGIT, VIOLIN)]


def test_dataset_items_with_every_transform_on_depend_only_on_seed_epoch_index():
    audio = get_model_config("small").audio
    cfg = AugmentConfig(**ALL_ON, mix_prob=0.5)
    ds = ManifestDataset(_samples(), audio, seed=7, augment=cfg)
    keys = [(0, 2), (0, 3), (1, 2)]
    first = [ds[k]["waveform"] for k in keys]
    # a fresh dataset (as after --resume: empty cache) read in another order gives the same items
    fresh = ManifestDataset(_samples(), audio, seed=7, augment=cfg)
    again = [fresh[k]["waveform"] for k in reversed(keys)][::-1]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert all(w.shape == (audio.num_samples,) for w in first)
    assert not torch.equal(first[0], first[2])  # another epoch, other draws


def test_old_recipes_draw_exactly_what_they_drew_before():
    # openclap-mini's recipe (gain only) must keep giving the shipped model's crops: crop, then gain
    audio = get_model_config("small").audio
    ds = ManifestDataset(_samples(), audio, seed=0, augment=AugmentConfig(gain_db=6.0))
    for index in range(4):
        g = torch.Generator().manual_seed(sample_seed(0, 2, index))
        crop = random_crop(torch.from_numpy(load_audio(_samples()[index].path, RATE)), audio.num_samples, g)
        expected = crop * 10.0 ** ((2 * float(torch.rand((), generator=g)) - 1) * 6.0 / 20)
        assert torch.equal(ds[(2, index)]["waveform"], expected)


def test_augment_config_validates_ranges():
    cfg = build(AugmentConfig, {"speed_prob": 0.5, "speed_range": [0.8, 1.25], "noise_snr_db": [0, 10]})
    assert cfg.speed_range == (0.8, 1.25) and cfg.enabled
    assert not AugmentConfig().enabled
    for bad in (
        {"speed_range": [1.2, 0.8]},
        {"noise_prob": 1.5},
        {"mulaw_bits": 1},
        {"eq_bands": 1},
        {"reverb_rt60": [0.0, 1.0]},
        {"time_masks": -1},
    ):
        with pytest.raises(TrainConfigError):
            AugmentConfig(**bad)


def test_manifest_augment_overrides_reach_only_that_manifests_rows(tmp_path):
    # the run augments every row by +-6 dB; the second manifest (instrument notes, say) turns gain off
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "path,caption,label\n" + "".join(f"{DEMO / n},{n},{n}\n" for n in (DOG, RAIN, DIGIT, VIOLIN))
    )
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"model: small\nmax_steps: 1\naugment: {{gain_db: 6.0, speed_range: [0.8, 1.2]}}\n"
        f"train_manifest:\n  - {{path: {manifest}, include: {{label: [{DOG}, {RAIN}]}}}}\n"
        f"  - {{path: {manifest}, include: {{label: [{DIGIT}, {VIOLIN}]}}, augment: {{gain_db: 0.0}}}}\n"
    )
    cfg = load_config(recipe)
    merged = cfg.manifest_augment(cfg.train_manifest[1])
    assert (merged.gain_db, merged.speed_range) == (0.0, (0.8, 1.2)) and cfg.augment.gain_db == 6.0
    samples = read_train_manifests(cfg)
    assert [s.augment for s in samples] == [None, None, merged, merged]
    audio = get_model_config("small").audio
    ds = ManifestDataset(samples, audio, seed=3, augment=cfg.augment)
    for index, sample in enumerate(samples):
        g = torch.Generator().manual_seed(sample_seed(3, 0, index))
        crop = random_crop(torch.from_numpy(load_audio(sample.path, RATE)), audio.num_samples, g)
        if index < 2:  # the run's gain; the overriding manifest's rows come out as cropped
            crop = crop * 10.0 ** ((2 * float(torch.rand((), generator=g)) - 1) * 6.0 / 20)
        assert torch.equal(ds[(0, index)]["waveform"], crop), index


def test_manifest_augment_with_an_unknown_key_fails_at_load(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: small\ntrain_manifest:\n  - {path: m.csv, augment: {gian_db: 1}}\n")
    with pytest.raises(TrainConfigError, match=r"manifest m.csv: augment: unknown key\(s\) \['gian_db'\]"):
        load_config(recipe)


def test_background_false_keeps_a_manifests_rows_out_of_the_background_noise(tmp_path):
    # the digit and the note opt out (background: false): the dog is the only clip mixed into others
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "path,caption,label\n" + "".join(f"{DEMO / n},{n},{n}\n" for n in (DIGIT, VIOLIN, DOG))
    )
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "model: small\nmax_steps: 1\naugment: {noise_prob: 1.0, noise_snr_db: [0, 10]}\n"
        f"train_manifest:\n  - {{path: {manifest}, include: {{label: [{DIGIT}, {VIOLIN}]}}, "
        "background: false}\n"
        f"  - {{path: {manifest}, include: {{label: [{DOG}]}}}}\n"
    )
    cfg = load_config(recipe)
    samples = read_train_manifests(cfg)
    assert [s.background for s in samples] == [False, False, True]
    audio = get_model_config("small").audio
    waves = [torch.from_numpy(load_audio(s.path, RATE)) for s in samples]

    def expected(epoch: int, index: int, pool: list[int]) -> torch.Tensor:
        # the dataset's draws: crop, "noise?" (always, p = 1), which background, its crop, the mix
        g = torch.Generator().manual_seed(sample_seed(5, epoch, index))
        crop = random_crop(waves[index], audio.num_samples, g)
        assert float(torch.rand((), generator=g)) < 1.0
        background = waves[pool[int(torch.randint(0, len(pool), (), generator=g))]]
        noise = random_crop(background, audio.num_samples, g)
        return augment_wave(crop, cfg.augment, g, rate=RATE, noise=noise)

    ds = ManifestDataset(samples, audio, seed=5, augment=cfg.augment)
    assert ds.backgrounds == [2]
    keys = [(epoch, index) for epoch in range(3) for index in range(3)]
    for key in keys:
        assert torch.equal(ds[key]["waveform"], expected(*key, pool=[2])), key
    # by default every row is a background, drawn by the same generator as before the option existed
    everyone = ManifestDataset([replace(s, background=True) for s in samples], audio, 5, cfg.augment)
    for key in keys:
        assert torch.equal(everyone[key]["waveform"], expected(*key, pool=[0, 1, 2])), key
    assert any(not torch.equal(ds[k]["waveform"], everyone[k]["waveform"]) for k in keys)
    # noise asked for, but no manifest may give it: an error at start, not silence
    with pytest.raises(ValueError, match="background: false"):
        ManifestDataset(samples[:2], audio, seed=5, augment=cfg.augment)
