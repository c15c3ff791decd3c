"""Audio encoders: shapes, msclap key compatibility, SDPA equivalence, determinism."""

from __future__ import annotations

import math
import time

import pytest
import torch

from openclap.audio import swin, swin_fast
from openclap.audio.cnn14 import CNN14, CNN14_MSCLAP_DROPPED_KEYS
from openclap.audio.encoders import AUDIO_ENCODERS, build_audio_encoder
from openclap.audio.htsat import HTSAT, HTSAT_MSCLAP_DROPPED_KEYS
from openclap.audio.output import AudioEncoderOutput
from openclap.config import AudioConfig, CNN14Config, FrontendConfig, HTSATConfig

# Frames of a 7 s / 5 s clip at 44.1 kHz, hop 320, centred STFT: 1 + samples // hop.
FRAMES_7S = 1 + (7 * 44100) // 320  # 965
FRAMES_5S = 1 + (5 * 44100) // 320  # 690

# Counts worked out from the msclap module code (microsoft/CLAP msclap/models/htsat.py, audio.py).
HTSAT_TINY_PARAMS = 30_241_687  # incl. tscam_conv (2,427,335) and the unused head (278,256)
HTSAT_TINY_MSCLAP_KEYS = 200  # 180 here + 12 relative_position_index + 5 attn_mask + 3 front end
CNN14_PARAMS = 80_753_615
CNN14_MSCLAP_KEYS = 84  # 81 here + 3 front end

SMALL = HTSATConfig(
    embed_dim=16, depths=(1, 1), num_heads=(1, 2), window_size=4, spec_size=64, num_classes=10
)
SMALL_MELS = 16


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def logmel(batch: int, frames: int, mels: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, frames, mels, generator=g) * 15 - 40  # dB-like values


def msclap_htsat_shapes(
    embed: int = 96,
    depths: tuple[int, ...] = (2, 2, 6, 2),
    heads: tuple[int, ...] = (4, 8, 16, 32),
    ws: int = 8,
    spec: int = 256,
    mels: int = 64,
    classes: int = 527,
    patch: int = 4,
    n_fft: int = 1024,
) -> dict[str, tuple[int, ...]]:
    """Every key and shape of msclap's HTSAT_Swin_Transformer state dict, written from its __init__."""
    s: dict[str, tuple[int, ...]] = {
        "spectrogram_extractor.stft.conv_real.weight": (n_fft // 2 + 1, 1, n_fft),
        "spectrogram_extractor.stft.conv_imag.weight": (n_fft // 2 + 1, 1, n_fft),
        "logmel_extractor.melW": (n_fft // 2 + 1, mels),
        "bn0.weight": (mels,),
        "bn0.bias": (mels,),
        "bn0.running_mean": (mels,),
        "bn0.running_var": (mels,),
        "bn0.num_batches_tracked": (),
        "patch_embed.proj.weight": (embed, 1, patch, patch),
        "patch_embed.proj.bias": (embed,),
        "patch_embed.norm.weight": (embed,),
        "patch_embed.norm.bias": (embed,),
    }
    res = spec // patch
    for i, (depth, nh) in enumerate(zip(depths, heads)):
        dim = embed * 2**i
        r = res // 2**i
        w = min(ws, r)
        for j in range(depth):
            p = f"layers.{i}.blocks.{j}."
            s[p + "norm1.weight"] = s[p + "norm1.bias"] = (dim,)
            s[p + "attn.relative_position_bias_table"] = ((2 * w - 1) ** 2, nh)
            s[p + "attn.relative_position_index"] = (w * w, w * w)
            s[p + "attn.qkv.weight"] = (3 * dim, dim)
            s[p + "attn.qkv.bias"] = (3 * dim,)
            s[p + "attn.proj.weight"] = (dim, dim)
            s[p + "attn.proj.bias"] = (dim,)
            s[p + "norm2.weight"] = s[p + "norm2.bias"] = (dim,)
            s[p + "mlp.fc1.weight"] = (4 * dim, dim)
            s[p + "mlp.fc1.bias"] = (4 * dim,)
            s[p + "mlp.fc2.weight"] = (dim, 4 * dim)
            s[p + "mlp.fc2.bias"] = (dim,)
            if j % 2 == 1 and r > ws:  # shifted block; no shift when the window covers the map
                s[p + "attn_mask"] = ((r // w) ** 2, w * w, w * w)
        if i < len(depths) - 1:
            s[f"layers.{i}.downsample.reduction.weight"] = (2 * dim, 4 * dim)
            s[f"layers.{i}.downsample.norm.weight"] = s[f"layers.{i}.downsample.norm.bias"] = (4 * dim,)
    width = embed * 2 ** (len(depths) - 1)
    freq_ratio = spec // mels
    sf = spec // 2 ** (len(depths) - 1) // patch // freq_ratio
    s["norm.weight"] = s["norm.bias"] = (width,)
    s["tscam_conv.weight"] = (classes, width, sf, 3)
    s["tscam_conv.bias"] = (classes,)
    s["head.weight"] = (classes, classes)
    s["head.bias"] = (classes,)
    return s


def msclap_cnn14_shapes(mels: int = 64, n_fft: int = 1024) -> dict[str, tuple[int, ...]]:
    s: dict[str, tuple[int, ...]] = {
        "spectrogram_extractor.stft.conv_real.weight": (n_fft // 2 + 1, 1, n_fft),
        "spectrogram_extractor.stft.conv_imag.weight": (n_fft // 2 + 1, 1, n_fft),
        "logmel_extractor.melW": (n_fft // 2 + 1, mels),
    }
    for name in ("weight", "bias", "running_mean", "running_var"):
        s[f"bn0.{name}"] = (mels,)
    s["bn0.num_batches_tracked"] = ()
    c_in = 1
    for i, c in enumerate((64, 128, 256, 512, 1024, 2048), start=1):
        s[f"conv_block{i}.conv1.weight"] = (c, c_in, 3, 3)
        s[f"conv_block{i}.conv2.weight"] = (c, c, 3, 3)
        for bn in ("bn1", "bn2"):
            for name in ("weight", "bias", "running_mean", "running_var"):
                s[f"conv_block{i}.{bn}.{name}"] = (c,)
            s[f"conv_block{i}.{bn}.num_batches_tracked"] = ()
        c_in = c
    s["fc1.weight"], s["fc1.bias"] = (2048, 2048), (2048,)
    s["fc_audioset.weight"], s["fc_audioset.bias"] = (527, 2048), (527,)
    return s


def is_param_key(key: str) -> bool:
    return not key.endswith(("running_mean", "running_var", "num_batches_tracked"))


@pytest.fixture(scope="module")
def tiny() -> HTSAT:
    torch.manual_seed(0)
    return HTSAT(HTSATConfig(), n_mels=64).eval()


@pytest.fixture(scope="module")
def tiny_batch4(tiny: HTSAT) -> tuple[torch.Tensor, AudioEncoderOutput]:
    x = logmel(4, FRAMES_7S, 64)
    with torch.no_grad():
        t0 = time.perf_counter()
        out = tiny(x)
        print(f"\nHTSAT-tiny forward, batch 4 x {FRAMES_7S} frames: {time.perf_counter() - t0:.2f} s")
    return x, out


# ---------------------------------------------------------------------------------------------- HTSAT


def test_htsat_tiny_shapes_and_params(tiny: HTSAT, tiny_batch4) -> None:
    _, out = tiny_batch4
    assert isinstance(out, AudioEncoderOutput)
    assert out.features.shape == (4, 768)
    assert out.clipwise_logits.shape == (4, 527)
    assert out.framewise is not None and out.framewise.shape == (4, 32, 527)
    torch.testing.assert_close(out.framewise.mean(dim=1), out.clipwise_logits, rtol=1e-5, atol=1e-5)
    count = n_params(tiny)
    print(f"HTSAT-tiny parameters: {count:,}")
    expected = msclap_htsat_shapes()
    from_msclap = sum(
        math.prod(shape)
        for key, shape in expected.items()
        if is_param_key(key)
        and key not in HTSAT_MSCLAP_DROPPED_KEYS
        and not key.endswith(("_index", "attn_mask"))
    )
    assert count == from_msclap == HTSAT_TINY_PARAMS


def test_htsat_tiny_state_dict_matches_msclap(tiny: HTSAT) -> None:
    expected = msclap_htsat_shapes()
    assert len(expected) == HTSAT_TINY_MSCLAP_KEYS
    buffers = tiny.msclap_buffers()
    ours = {k: tuple(v.shape) for k, v in tiny.state_dict().items()}
    recomputed = {k: tuple(v.shape) for k, v in buffers.items()}
    assert set(ours).isdisjoint(recomputed)
    assert set(ours) | set(recomputed) | set(HTSAT_MSCLAP_DROPPED_KEYS) == set(expected)
    for key, shape in {**ours, **recomputed}.items():
        assert shape == expected[key], key
    # A few keys read directly from CLAP_weights_2023.pth (prefix audio_encoder.base.htsat. stripped).
    for key, shape in {
        "bn0.running_var": (64,),
        "patch_embed.proj.weight": (96, 1, 4, 4),
        "layers.0.blocks.0.attn.relative_position_bias_table": (225, 4),
        "layers.0.blocks.1.attn_mask": (64, 64, 64),
        "layers.0.downsample.reduction.weight": (192, 384),
        "layers.2.blocks.5.mlp.fc2.weight": (384, 1536),
        "layers.3.blocks.1.attn.qkv.weight": (2304, 768),
        "norm.weight": (768,),
        "tscam_conv.weight": (527, 768, 2, 3),
        "head.weight": (527, 527),
    }.items():
        assert expected[key] == shape and {**ours, **recomputed}[key] == shape, key
    assert "layers.3.blocks.1.attn_mask" not in expected  # 8x8 map, window 8: no shift


def _msclap_relative_position_index(ws: int) -> torch.Tensor:
    """Brute force: index (dy + ws - 1) * (2ws - 1) + (dx + ws - 1) for query (y1, x1), key (y2, x2)."""
    n = ws * ws
    out = torch.empty(n, n, dtype=torch.long)
    for i in range(n):
        for j in range(n):
            dy, dx = i // ws - j // ws, i % ws - j % ws
            out[i, j] = (dy + ws - 1) * (2 * ws - 1) + (dx + ws - 1)
    return out


def _msclap_attn_mask(res: int, ws: int, shift: int) -> torch.Tensor:
    """Brute force: -100 between tokens of different regions of the cyclically shifted map."""

    def region(p: int) -> int:
        return 0 if p < res - ws else (1 if p < res - shift else 2)

    nw = res // ws
    out = torch.zeros(nw * nw, ws * ws, ws * ws)
    for w in range(nw * nw):
        wy, wx = divmod(w, nw)
        labels = [3 * region(wy * ws + t // ws) + region(wx * ws + t % ws) for t in range(ws * ws)]
        for a in range(ws * ws):
            for b in range(ws * ws):
                if labels[a] != labels[b]:
                    out[w, a, b] = -100.0
    return out


def test_htsat_loads_msclap_layout_strictly() -> None:
    """A checkpoint laid out as msclap's (random values) loads with a prefix strip and drops only."""
    model = HTSAT(SMALL, n_mels=SMALL_MELS).eval()
    shapes = msclap_htsat_shapes(embed=16, depths=(1, 1), heads=(1, 2), ws=4, spec=64, mels=16, classes=10)
    g = torch.Generator().manual_seed(1)
    ckpt = {f"audio_encoder.base.htsat.{k}": torch.randn(v, generator=g) for k, v in shapes.items()}
    for key, shape in shapes.items():
        if key.endswith("relative_position_index"):
            ckpt[f"audio_encoder.base.htsat.{key}"] = _msclap_relative_position_index(math.isqrt(shape[0]))
        elif key.endswith("attn_mask"):
            ckpt[f"audio_encoder.base.htsat.{key}"] = _msclap_attn_mask(16, 4, 2)
        elif key.endswith("running_var"):
            ckpt[f"audio_encoder.base.htsat.{key}"] = torch.rand(shape, generator=g) + 0.5
    stripped = {k.removeprefix("audio_encoder.base.htsat."): v for k, v in ckpt.items()}
    buffers = model.msclap_buffers()
    assert buffers  # the small config has a shifted block too
    for key, value in buffers.items():
        torch.testing.assert_close(stripped.pop(key), value, rtol=0, atol=0)
    for key in HTSAT_MSCLAP_DROPPED_KEYS:
        del stripped[key]
    model.load_state_dict(stripped, strict=True)
    with torch.no_grad():
        assert torch.isfinite(model(logmel(1, 200, SMALL_MELS)).features).all()


def test_htsat_image_fold_matches_msclap_reshape(tiny: HTSAT) -> None:
    """to_image equals msclap's reshape_wav2img op for op (bicubic resample, permute/reshape)."""
    x = logmel(2, FRAMES_7S, 64).unsqueeze(1)  # (B, 1, T, F)
    ref = torch.nn.functional.interpolate(x, (1024, 64), mode="bicubic", align_corners=True)
    ref = ref.permute(0, 1, 3, 2).contiguous()
    ref = ref.reshape(2, 1, 64, 4, 256).permute(0, 1, 3, 2, 4).contiguous().reshape(2, 1, 256, 256)
    torch.testing.assert_close(tiny.to_image(x), ref, rtol=0, atol=0)


def test_htsat_batch_invariant_and_deterministic(tiny: HTSAT, tiny_batch4) -> None:
    x, out4 = tiny_batch4
    with torch.no_grad():
        one = tiny(x[1:2])
        again = tiny(x[1:2])
    assert torch.equal(one.features, again.features)
    assert (one.features - out4.features[1:2]).abs().max().item() <= 1e-5


def test_htsat_small_config_is_fast_and_trains() -> None:
    torch.manual_seed(0)
    model = HTSAT(SMALL, n_mels=SMALL_MELS)
    print(f"small HTSAT parameters: {n_params(model):,}")
    x = logmel(3, 250, SMALL_MELS)
    model.eval()
    with torch.no_grad():
        model(x)
        t0 = time.perf_counter()
        out = model(x)
        elapsed = time.perf_counter() - t0
    print(f"small HTSAT forward, batch 3: {elapsed * 1000:.1f} ms")
    assert out.features.shape == (3, SMALL.width) == (3, 32)
    assert out.clipwise_logits.shape == (3, 10)
    model.train()
    out = model(x)
    (out.features.square().mean() + out.clipwise_logits.mean()).backward()
    assert model.head.weight.grad is None and not model.head.weight.requires_grad
    grads = [p.grad for n, p in model.named_parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_htsat_rejects_bad_input() -> None:
    model = HTSAT(SMALL, n_mels=SMALL_MELS).eval()
    with pytest.raises(ValueError, match="at most 256 frames"):
        model(logmel(1, 257, SMALL_MELS))
    with pytest.raises(ValueError, match="frames, 16"):
        model(logmel(1, 100, 20))
    with pytest.raises(ValueError, match="n_mels"):
        HTSAT(SMALL, n_mels=128)
    with pytest.raises(ValueError, match="window_size"):
        HTSAT(HTSATConfig(embed_dim=8, depths=(1,), num_heads=(1,), window_size=5, spec_size=64), n_mels=16)


# ---------------------------------------------------------------------------------------------- CNN14


def test_cnn14_shapes_params_and_keys() -> None:
    torch.manual_seed(0)
    model = CNN14(CNN14Config(), n_mels=64).eval()
    count = n_params(model)
    print(f"\nCNN14 parameters: {count:,}")
    expected = msclap_cnn14_shapes()
    assert len(expected) == CNN14_MSCLAP_KEYS
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert set(ours) | set(CNN14_MSCLAP_DROPPED_KEYS) == set(expected)
    assert all(shape == expected[k] for k, shape in ours.items())
    from_msclap = sum(
        math.prod(s) for k, s in expected.items() if is_param_key(k) and k not in CNN14_MSCLAP_DROPPED_KEYS
    )
    assert count == from_msclap == CNN14_PARAMS
    x = logmel(2, FRAMES_5S, 64)
    with torch.no_grad():
        t0 = time.perf_counter()
        out = model(x)
        print(f"CNN14 forward, batch 2 x {FRAMES_5S} frames: {time.perf_counter() - t0:.2f} s")
        one = model(x[1:])
    assert out.features.shape == (2, 2048)
    assert out.clipwise_logits.shape == (2, 527)
    assert out.framewise is None
    assert (out.features >= 0).all()  # ReLU(fc1)
    assert (one.features - out.features[1:]).abs().max().item() <= 1e-5


def test_cnn14_rejects_bad_input() -> None:
    model = CNN14(CNN14Config(channels=(4, 8)), n_mels=8).eval()
    with pytest.raises(ValueError, match="frames"):
        model(logmel(1, 1, 8))
    with pytest.raises(ValueError, match="frames, 8"):
        model(logmel(1, 10, 9))


# ------------------------------------------------------------------------------------------- factory


def test_build_audio_encoder_uses_config() -> None:
    assert set(AUDIO_ENCODERS) == {"htsat", "cnn14"}
    cfg = AudioConfig(encoder="htsat", frontend=FrontendConfig(n_mels=SMALL_MELS), htsat=SMALL)
    model = build_audio_encoder(cfg)
    assert isinstance(model, HTSAT) and model.n_mels == SMALL_MELS
    assert model.norm.normalized_shape == (cfg.width,)
    cfg = AudioConfig(
        encoder="cnn14", frontend=FrontendConfig(n_mels=32), cnn14=CNN14Config(channels=(4, 8, 16))
    )
    model = build_audio_encoder(cfg)
    assert isinstance(model, CNN14) and model.bn0.num_features == 32
    with torch.no_grad():
        out = model.eval()(logmel(2, 40, 32))
    assert out.features.shape == (2, cfg.width) == (2, 16)


# ------------------------------------------------------------- HTSAT fast path vs the plain reference
# audio/swin.py is the plain Swin op order of msclap (roll, window partition, explicit softmax with the
# per-window mask, window reverse, roll back, patch merging by 4 strided slices + cat); audio/swin_fast.py
# keeps a window-major stream, gathers once per block and uses split SDPA. Same weights, same numbers.


def _reference(model: HTSAT, x: torch.Tensor) -> AudioEncoderOutput:
    model.set_fast_path(False)
    try:
        return model(x)
    finally:
        model.set_fast_path(True)


def _randomise_bias_tables(model: HTSAT, seed: int) -> None:
    """Position bias tables and every linear/norm bias random (init has them ~0: bias bugs would hide)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("relative_position_bias_table"):
                p.copy_(torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))


DEEP = HTSATConfig(
    embed_dim=16,
    depths=(2, 2, 2),
    num_heads=(1, 2, 4),
    window_size=4,
    spec_size=64,
    num_classes=10,
    drop_path_rate=0.0,
)


def test_window_token_order_is_roll_plus_partition() -> None:
    H, W, ws = 16, 8, 4
    grid = torch.arange(H * W).view(1, H, W, 1)
    for shift in (0, 2):
        rolled = torch.roll(grid, shifts=(-shift, -shift), dims=(1, 2)) if shift else grid
        expected = swin.window_partition(rolled, ws).squeeze(-1)
        assert torch.equal(swin_fast.window_token_order(H, W, ws, shift), expected)


def test_patch_merging_gather_equals_strided_cat() -> None:
    torch.manual_seed(0)
    merge = swin.PatchMerging((8, 12), 6)
    x = torch.randn(3, 96, 6)
    rows = swin_fast.merge_source_rows(merge, torch.arange(3 * 4 * 6))  # raster rows of each 2x2 group
    groups = x.reshape(-1, 6)[rows.flatten()].view(3, 24, 24)
    torch.testing.assert_close(merge.reduce(groups), merge(x), rtol=0, atol=0)


@pytest.mark.parametrize("chunk_rows", [0, 64, 4096])
def test_htsat_fast_path_equals_reference(chunk_rows: int, monkeypatch) -> None:
    """Window-major stream, fused gathers, split SDPA and chunked inference = the plain reference (swin.py)."""
    monkeypatch.setattr(swin_fast, "CHUNK_ROWS", chunk_rows)
    torch.manual_seed(0)
    model = HTSAT(DEEP, n_mels=SMALL_MELS).eval()
    _randomise_bias_tables(model, 3)
    x = logmel(3, 250, SMALL_MELS)
    with torch.no_grad():
        out = model(x)
        ref = _reference(model, x)
    diff = (out.features - ref.features).abs().max().item()
    diff_logits = (out.clipwise_logits - ref.clipwise_logits).abs().max().item()
    print(f"chunk_rows={chunk_rows}: max abs diff to the reference {diff:.1e} (logits {diff_logits:.1e})")
    assert diff <= 1e-5 and diff_logits <= 1e-5


def test_htsat_tiny_fast_path_equals_reference(tiny: HTSAT, tiny_batch4) -> None:
    x, _ = tiny_batch4
    assert tiny.fast_path  # the default
    model = HTSAT(HTSATConfig(), n_mels=64).eval()
    model.load_state_dict(tiny.state_dict())
    _randomise_bias_tables(model, 5)
    with torch.no_grad():
        out = model(x[:2])
        ref = _reference(model, x[:2])
    diff = (out.features - ref.features).abs().max().item()
    diff_logits = (out.clipwise_logits - ref.clipwise_logits).abs().max().item()
    print(f"HTSAT-tiny fast path vs reference, max abs diff: features {diff:.1e}, logits {diff_logits:.1e}")
    assert diff <= 1e-5 and diff_logits <= 1e-5


def test_htsat_fast_path_gradients_equal_reference() -> None:
    torch.manual_seed(0)
    model = HTSAT(DEEP, n_mels=SMALL_MELS).train()
    _randomise_bias_tables(model, 4)
    x = logmel(2, 250, SMALL_MELS)
    grads = []
    for fast in (True, False):
        model.zero_grad()
        model.set_fast_path(fast)
        torch.manual_seed(1)  # dropout rates are 0 in DEEP; bn0 uses batch statistics in train mode
        out = model(x)
        (out.features.square().mean() + out.clipwise_logits.mean()).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) == sum(
        p.requires_grad for p in model.parameters()
    )
    for name, g in grads[0].items():
        torch.testing.assert_close(g, grads[1][name], rtol=1e-4, atol=1e-6, msg=name)
