"""int8 inference path (openclap.load(..., int8=True)): per-channel weights, sensitive layers kept fp32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from full_presets import full_preset
from torch import nn

import openclap
from openclap.bulk.speed import INT8_KEEP_FP32, quantize_int8

DEMO = Path(openclap.__file__).parent / "assets" / "demo"
CLIPS = sorted(p for p in DEMO.iterdir() if p.suffix == ".flac")
PROMPTS = ["this is the sound of a dog", "this is the sound of rain", "a violin", "a clock ticking"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: one intra-op thread, restored after


@pytest.fixture
def int8_calls_returned_their_input(monkeypatch) -> list[bool]:
    """From here on, each call of ``openclap.bulk.speed.quantize_int8`` (what load() and the CLI call)
    appends whether it returned the very model it was given (quantized in place, no copy)."""
    from openclap.bulk import speed

    calls: list[bool] = []

    def quantize_and_record(model, **kwargs):
        out = quantize_int8(model, **kwargs)
        calls.append(out is model)
        return out

    monkeypatch.setattr(speed, "quantize_int8", quantize_and_record)
    return calls


def test_int8_from_the_python_api_is_close_to_fp32_on_real_clips() -> None:
    fp32 = openclap.load("openclap-mini")
    int8 = openclap.load("openclap-mini", int8=True)
    modules = dict(int8.model.named_modules())
    quantized = [n for n, m in modules.items() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    assert "audio_encoder.layers.0.blocks.0.attn.qkv" in quantized
    # Per-channel weights: one scale per output row.
    qkv = modules["audio_encoder.layers.0.blocks.0.attn.qkv"].weight()
    assert qkv.qscheme() == torch.per_channel_affine and qkv.q_per_channel_scales().numel() == qkv.shape[0]
    # The sensitive layers stay float.
    for name in (
        "audio_projection.linear1",
        "text_projection.linear2",
        "audio_encoder.layers.0.downsample.reduction",
    ):
        assert type(modules[name]) is nn.Linear, name
    a32, a8 = fp32.embed_audio(CLIPS), int8.embed_audio(CLIPS)
    t32, t8 = fp32.embed_text(PROMPTS), int8.embed_text(PROMPTS)
    cos_a, cos_t = (a32 * a8).sum(1), (t32 * t8).sum(1)
    print(
        f"openclap-mini int8 vs fp32 on {len(CLIPS)} clips: min cosine audio {cos_a.min():.6f}, text {cos_t.min():.6f}"
    )
    assert cos_a.min() >= 0.999 and cos_t.min() >= 0.999
    assert not np.array_equal(a32, a8)  # it did quantize something


def test_keep_list_and_per_tensor_option() -> None:
    model = openclap.load("openclap-mini").model
    everything = quantize_int8(model, keep_fp32=(), per_channel=False)
    assert isinstance(everything.audio_projection.linear1, torch.ao.nn.quantized.dynamic.Linear)
    w = everything.audio_encoder.layers[0].blocks[0].attn.qkv.weight()
    assert w.qscheme() == torch.per_tensor_affine
    assert all(isinstance(k, str) for k in INT8_KEEP_FP32)
    assert type(model.audio_encoder.layers[0].blocks[0].attn.qkv) is nn.Linear  # the original is untouched


def test_int8_refuses_other_speed_options() -> None:
    with pytest.raises(ValueError, match="int8=True is its own CPU path"):
        openclap.load("openclap-mini", int8=True, dtype="bfloat16")


def test_inplace_quantizes_the_model_itself_with_the_same_numbers(
    int8_calls_returned_their_input: list[bool],
) -> None:
    """load(int8=True) owns its model and quantizes it in place: no second float32 copy in memory."""
    model = openclap.load("openclap-mini").model
    copied = quantize_int8(model)
    assert type(model.audio_encoder.layers[0].blocks[0].attn.qkv) is nn.Linear  # a copy: untouched
    same = quantize_int8(model, inplace=True)
    assert same is model
    assert isinstance(model.audio_encoder.layers[0].blocks[0].attn.qkv, torch.ao.nn.quantized.dynamic.Linear)
    assert same.openclap_fingerprint == copied.openclap_fingerprint
    wave = torch.randn(2, 40_000, generator=torch.Generator().manual_seed(0)) * 0.1
    with torch.no_grad():
        assert torch.equal(same.encode_audio(wave), copied.encode_audio(wave))
    # load() hands quantize_int8 the model it built and gets that very object back (no copy made)
    loaded = openclap.load("openclap-mini", int8=True).model
    assert int8_calls_returned_their_input == [True]
    assert isinstance(loaded.audio_encoder.layers[0].blocks[0].attn.qkv, torch.ao.nn.quantized.dynamic.Linear)


def test_cli_embed_int8_gives_the_python_api_vectors(
    tmp_path: Path, int8_calls_returned_their_input: list[bool]
) -> None:
    """`openclap embed --int8` quantizes the pipeline's own model in place and embeds what load(int8=True)
    embeds."""
    from openclap.cli import main as cli_main

    # one file: dynamic int8 scales its activations per batch, so the CLI and the API must batch alike
    files = [str(CLIPS[0])]
    base = ["embed", *files, "--num-workers", "0", "--pool", "mean", "--model", "openclap-mini"]
    assert cli_main([*base, "--out", str(tmp_path / "int8.npz"), "--int8"]) == 0
    assert int8_calls_returned_their_input == [True]
    assert cli_main([*base, "--out", str(tmp_path / "fp32.npz")]) == 0
    cli_int8 = np.load(tmp_path / "int8.npz")["embeddings"]
    cli_fp32 = np.load(tmp_path / "fp32.npz")["embeddings"]
    lib_int8 = openclap.load("openclap-mini", int8=True).embed_audio(files)
    np.testing.assert_allclose(cli_int8, lib_int8, atol=1e-6)
    assert np.abs(cli_int8 - cli_fp32).max() > 1e-5  # the flag changed the numbers: it was not dropped


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["msclap-2023", "msclap-2022", "laion-htsat-tiny-roberta"])
def test_full_presets_int8_close_to_fp32(preset: str, tmp_path: Path) -> None:
    """The int8 target (min cosine >= 0.999 to fp32) on the full-size networks, trained-like random weights
    (tests/full_presets.py), all 17 demo clips."""
    from openclap.pipeline import ClapPipeline

    fp32 = full_preset(preset, tmp_path, CLIPS[:8])
    int8 = ClapPipeline(quantize_int8(fp32.model), fp32.tokenizer)
    a32, a8 = fp32.embed_audio(CLIPS, batch_size=4), int8.embed_audio(CLIPS, batch_size=4)
    t32, t8 = fp32.embed_text(PROMPTS), int8.embed_text(PROMPTS)
    cos_a, cos_t = (a32 * a8).sum(1), (t32 * t8).sum(1)
    print(f"{preset} int8 vs fp32: min cosine audio {cos_a.min():.6f}, text {cos_t.min():.6f}")
    assert cos_a.min() >= 0.999 and cos_t.min() >= 0.999
    assert np.abs(a32 - a8).max() > 1e-4  # it did quantize the audio tower
    assert float(np.abs(a32[0] - a32[1]).max()) > 1e-2  # and the clips differ: not a comparison of constants
