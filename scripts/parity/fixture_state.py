"""Seeded random weights that a test can regenerate without the reference code (torch and numpy only).

The parity fixtures (``tests/data/parity``) are made once in the side venv: a reference model (msclap,
laion_clap) is built with its own classes, every float tensor is refilled from one seeded generator
(``seeded_fill``), and the checkpoint the reference code then loads is described by ``describe_state``:
for each key either the filled tensor it holds (replayed from the seed, in fill order) or a constant the
reference code built (BatchNorm counters, HTSAT index/mask buffers, mel filterbank, position ids: stored;
GPT-2's causal mask: a rule; torchlibrosa's STFT kernels: rebuilt from the DFT definition and checked by
checksum, outside the hash because every converter drops them). ``rebuild_state`` regenerates the
checkpoint's state dict and ``state_sha256`` proves it equals the one the reference code ran.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch

STFT_SUFFIXES = ("spectrogram_extractor.stft.conv_real.weight", "spectrogram_extractor.stft.conv_imag.weight")


def fill_rule(name: str, scheme: str = "v1") -> str:
    """How ``seeded_fill`` fills a float tensor of this name ('keep' = left as the reference built it).

    ``scheme`` "v1" (msclap-2023, LAION, clapcap fixtures): weights N(0, 0.05). "fanin" (msclap-2022): weight
    matrices and conv kernels N(0, 0.25/fan_in), BatchNorm scales like LayerNorm scales and BatchNorm running
    statistics left for ``calibrate_batchnorm`` (stored as constants). Under "v1", CNN14's BatchNorm scales of
    ~0.05 shrank every block until the biases alone decided the output (every clip the same embedding), and
    BERT's fixed 0.05 std made every position's hidden state the same (pooling any token gave the same text
    embedding): comparisons on such weights cannot tell inputs or pooled positions apart.
    """
    if scheme not in ("v1", "fanin"):
        raise ValueError(f"unknown fill scheme {scheme!r}")
    if name.endswith(("running_var", "running_mean")):
        if scheme == "fanin":
            return "keep"  # set from real activations by calibrate_batchnorm
        return "var" if name.endswith("running_var") else "mean"
    if "logit_scale" in name:
        return "scale"
    parts = name.split(".")
    is_bn = scheme == "fanin" and len(parts) > 1 and parts[-2].startswith("bn")
    if ("norm" in name.lower() or "ln_" in name or is_bn) and name.endswith("weight"):
        return "lnw"
    if name.endswith(("attn.bias", "masked_bias", "attn_mask")) or "extractor" in name:
        return "keep"  # constant buffers and the frozen torchlibrosa front end keep their values
    if scheme == "fanin" and name.endswith("weight"):
        return "fanin"
    return "normal"


def _draw(rule: str, shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    """One filled tensor (float32), drawing from ``g`` exactly as the fill did."""
    if rule == "var":
        return torch.rand(shape, generator=g) + 0.5
    if rule == "mean":
        return 0.5 * torch.randn(shape, generator=g)
    if rule == "scale":
        return torch.full(shape, 2.5)
    if rule == "lnw":
        return 1 + 0.1 * torch.randn(shape, generator=g)
    if rule == "normal":
        return 0.05 * torch.randn(shape, generator=g)
    if rule == "fanin":
        # Gain 0.5 (std 0.018 at width 768, about BERT's own init of 0.02): at unit gain each layer's
        # attention average swamps the residual and every position ends with the same hidden state.
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        return 0.5 * torch.randn(shape, generator=g) / fan_in**0.5
    raise ValueError(f"unknown fill rule {rule!r}")


def seeded_fill(model: torch.nn.Module, seed: int, scheme: str = "v1") -> list[list[Any]]:
    """Refill every float parameter and buffer of ``model`` (parameters first, then buffers, in module
    order) from one generator by ``fill_rule(name, scheme)``; return ``[name, shape, rule]`` per filled
    tensor, in fill order (the rules are recorded, so replay needs no scheme)."""
    g = torch.Generator().manual_seed(seed)
    entries = []
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if not t.is_floating_point():
                continue
            rule = fill_rule(name, scheme)
            if rule == "keep":
                continue
            t.copy_(_draw(rule, tuple(t.shape), g).to(t.dtype))
            entries.append([name, list(t.shape), rule])
    return entries


def calibrate_batchnorm(module: torch.nn.Module, run: Any) -> int:
    """Set every BatchNorm's running mean/var to the per-channel statistics of its input while ``run()``
    pushes real data through ``module`` in eval mode (in order, so each layer sees calibrated inputs, as
    trained statistics would be); returns the number of BatchNorm layers set."""
    norms = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]

    def set_stats(bn: torch.nn.Module, args: tuple) -> None:
        x = args[0].detach().double()
        dims = [d for d in range(x.dim()) if d != 1]
        bn.running_mean.copy_(x.mean(dims).to(bn.running_mean.dtype))
        bn.running_var.copy_(x.var(dims).clamp_min(1e-3).to(bn.running_var.dtype))

    module.eval()
    handles = [bn.register_forward_pre_hook(set_stats) for bn in norms]
    try:
        with torch.no_grad():
            run()
    finally:
        for h in handles:
            h.remove()
    return len(norms)


def replay_fill(entries: list[list[Any]], seed: int) -> dict[str, torch.Tensor]:
    """The tensors ``seeded_fill`` wrote, regenerated from its entry list and seed."""
    g = torch.Generator().manual_seed(seed)
    return {name: _draw(rule, tuple(shape), g) for name, shape, rule in entries}


def stft_kernel(part: str, n_fft: int) -> torch.Tensor:
    """torchlibrosa's STFT convolution kernel (periodic Hann window times the DFT matrix), (F, 1, n_fft)."""
    k = np.arange(n_fft)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * k / n_fft)
    angle = 2 * np.pi * np.outer(np.arange(n_fft // 2 + 1), k) / n_fft
    kernel = np.cos(angle) if part == "real" else -np.sin(angle)
    return torch.from_numpy((kernel * window).astype(np.float32))[:, None, :]


def _stats(t: torch.Tensor) -> list[float]:
    x = t.double()
    return [float(x.sum()), float(x.abs().sum()), float((x * x).sum())]


def state_sha256(state: dict[str, torch.Tensor], skip: tuple[str, ...] = STFT_SUFFIXES) -> str:
    """SHA-256 over the keys, dtypes, shapes and bytes of a state dict (sorted by key), ``skip`` suffixes out."""
    h = hashlib.sha256()
    for key in sorted(state):
        if key.endswith(skip):
            continue
        t = state[key].detach().contiguous().cpu()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.view(torch.int16).numpy().tobytes())
    return h.hexdigest()


def describe_state(
    state: dict[str, torch.Tensor], model: torch.nn.Module, entries: list[list[Any]]
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """How to rebuild ``state`` (a checkpoint of ``model`` after ``seeded_fill``, its tensors shared with the
    model's): a key -> source map and the stored constants."""
    filled = {name for name, _, _ in entries}
    tensors = dict(model.named_parameters()) | dict(model.named_buffers())
    by_ptr = {(tensors[n].data_ptr(), tuple(tensors[n].shape)): n for n in filled}
    sources: dict[str, Any] = {}
    constants: dict[str, np.ndarray] = {}
    for key, value in state.items():
        src = by_ptr.get((value.data_ptr(), tuple(value.shape))) if value.is_floating_point() else None
        if src is not None and torch.equal(value, tensors[src]):
            sources[key] = ["fill", src]
        elif key.endswith(STFT_SUFFIXES):
            sources[key] = ["stft", "real" if "conv_real" in key else "imag", value.shape[-1], _stats(value)]
        elif (
            value.dtype == torch.bool
            and value.dim() == 4
            and torch.equal(
                value, torch.tril(torch.ones(value.shape[-2:], dtype=torch.bool)).view(value.shape)
            )
        ):
            sources[key] = ["tril", list(value.shape)]
        else:
            sources[key] = ["const", f"const/{key}"]
            constants[f"const/{key}"] = value.detach().cpu().numpy()
    return {"sources": sources, "fill": entries}, constants


def rebuild_state(recipe: dict[str, Any], seed: int, constants: Any) -> dict[str, torch.Tensor]:
    """The checkpoint state dict described by ``describe_state`` (constants: a mapping such as an npz)."""
    filled = replay_fill(recipe["fill"], seed)
    state: dict[str, torch.Tensor] = {}
    for key, source in recipe["sources"].items():
        kind = source[0]
        if kind == "fill":
            state[key] = filled[source[1]]
        elif kind == "stft":
            kernel = stft_kernel(source[1], source[2])
            got = _stats(kernel)
            if not np.allclose(got, source[3], rtol=1e-5, atol=1e-3):
                raise ValueError(
                    f"{key}: rebuilt STFT kernel checksums {got} differ from the reference's {source[3]}"
                )
            state[key] = kernel
        elif kind == "tril":
            shape = source[1]
            state[key] = torch.tril(torch.ones(shape[-2:], dtype=torch.bool)).view(shape)
        else:
            state[key] = torch.from_numpy(np.array(constants[source[1]]))
    return state
