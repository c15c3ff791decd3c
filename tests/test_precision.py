"""Reduced precision (``dtype=``) and ``torch.compile`` (``compile=``) for inference: same vectors, or close.

Bound for bfloat16: measured on an AVX2 CPU without native bf16 (emulated), 40 ESC-10 clips and 6
prompts gave a minimum cosine to float32 of 0.99998 for ``tiny`` (random weights) and 0.99998 / 0.99999
for the bundled ``openclap-mini`` (both its earlier CNN14 and its HTSAT version); msclap-2023 gave 0.99995
(benchmarks/embed_throughput.py); on an AMX CPU (native bf16 matrix products) msclap-2023 gave 0.99997 audio,
0.99995 text. bfloat16 keeps 8 mantissa bits (rounding ~0.2 % per value); the tests ask for
>= 0.999, 50x the measured deviation, to leave room for other CPUs' and GPUs' kernels; the vectors must
also differ from float32, so a dtype that silently does nothing fails too.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import openclap
from openclap.cli import build_parser
from openclap.cli import main as cli_main
from openclap.compiled import compile_cache_dir
from openclap.pipeline import ClapPipeline

BF16_MIN_COSINE = 0.999
PROMPTS = ["a dog barks", "rain falls on a tin roof", "a rooster crows at dawn", "waves crash on the shore"]


@pytest.fixture(scope="module")
def esc_clips(shared_data: Path) -> list[str]:
    """Ten real ESC-10 recordings (every 32nd file: several classes)."""
    return [str(p) for p in sorted((shared_data / "esc10" / "audio").glob("*.flac"))[::32][:10]]


def _check_close(fp32: np.ndarray, other: np.ndarray, min_cosine: float) -> np.ndarray:
    assert other.dtype == np.float32 and other.shape == fp32.shape
    np.testing.assert_allclose(np.linalg.norm(other, axis=1), 1.0, atol=1e-5)
    cosine = (fp32 * other).sum(axis=1)
    assert cosine.min() >= min_cosine, cosine
    return cosine


@pytest.mark.parametrize("name", ["tiny", "openclap-mini"])
def test_bfloat16_on_cpu_is_close_to_float32(name: str, esc_clips: list[str]) -> None:
    kwargs = {"pretrained": False} if name == "tiny" else {}
    fp32 = openclap.load(name, **kwargs)
    bf16 = openclap.load(name, dtype="bfloat16", **kwargs)
    assert bf16.dtype == "bfloat16" and bf16.model.autocast_dtype is torch.bfloat16
    audio = _check_close(fp32.embed_audio(esc_clips), bf16.embed_audio(esc_clips), BF16_MIN_COSINE)
    text = _check_close(fp32.embed_text(PROMPTS), bf16.embed_text(PROMPTS), BF16_MIN_COSINE)
    # The reduced path really ran: the vectors differ from float32 (they would be equal to ~1e-7 otherwise).
    assert audio.min() < 1 - 1e-6 and text.min() < 1 - 1e-6


def test_front_end_stays_float32_under_bfloat16(esc_clips: list[str]) -> None:
    pipe = openclap.load("tiny", pretrained=False, dtype="bfloat16")
    wave = torch.from_numpy(openclap.load_audio(esc_clips[0], pipe.sample_rate))[
        None, : pipe.config.audio.num_samples
    ]
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        in_autocast = pipe.model.audio_frontend(wave)
    with torch.inference_mode():
        plain = pipe.model.audio_frontend(wave)
        embeds = pipe.model.encode_audio(wave)
    assert in_autocast.dtype == torch.float32 and torch.equal(in_autocast, plain)
    assert embeds.dtype == torch.float32


def test_float32_path_leaves_an_outer_autocast_alone() -> None:
    """dtype unset (the trainer's case): the model follows the caller's autocast, it does not turn it off."""
    pipe = openclap.load("tiny", pretrained=False)
    tokens = pipe.tokenizer(PROMPTS)
    ids, mask = tokens["input_ids"], tokens["attention_mask"]
    with torch.inference_mode():
        plain = pipe.model.encode_text(ids, mask)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outer = pipe.model.encode_text(ids, mask)
        own = pipe.configure(dtype="bfloat16").model.encode_text(ids, mask)
    # The caller's autocast took effect and its bf16 output is handed back as is (no cast to float32) ...
    assert outer.dtype == torch.bfloat16 and (plain - outer.float()).abs().max() > 1e-5
    # ... while the dtype option hands back float32 vectors.
    assert own.dtype == torch.float32


def test_float16_on_cpu_and_unknown_dtypes_are_refused() -> None:
    with pytest.raises(ValueError, match=r"CUDA-only.*use dtype='bfloat16'.*'float32'"):
        openclap.load("tiny", pretrained=False, dtype="float16")
    with pytest.raises(
        ValueError, match=r"dtype must be one of \['bfloat16', 'float16', 'float32'\], got 'int4'"
    ):
        openclap.load("tiny", pretrained=False, dtype="int4")


def test_cli_parses_speed_flags_only_where_they_are_used() -> None:
    parser = build_parser()
    for command in (
        ["classify", "x.wav", "--labels", "dog"],
        ["embed", "x.wav", "--out", "o"],
        ["search", "q", "--index", "i"],
        ["serve"],
        ["index", "build", "x.wav", "--out", "o"],
    ):
        args = parser.parse_args([*command, "--dtype", "bfloat16", "--compile"])
        assert args.dtype == "bfloat16" and args.compile is True, command
        args = parser.parse_args(command)
        assert args.dtype == "float32" and args.compile is False, command
    with pytest.raises(SystemExit):
        parser.parse_args(["classify", "x.wav", "--labels", "dog", "--dtype", "float64"])


def test_cli_dtype_reaches_the_pipeline(tmp_path: Path, esc_clips: list[str], capsys) -> None:
    files = esc_clips[:4]
    base = ["embed", *files, "--num-workers", "0", "--pool", "mean", "--model", "tiny"]
    assert cli_main([*base, "--out", str(tmp_path / "bf16.npz"), "--dtype", "bfloat16"]) == 0
    assert cli_main([*base, "--out", str(tmp_path / "fp32.npz")]) == 0
    cli_bf16, cli_fp32 = (
        np.load(tmp_path / "bf16.npz")["embeddings"],
        np.load(tmp_path / "fp32.npz")["embeddings"],
    )
    lib_bf16 = openclap.load("tiny", pretrained=False, dtype="bfloat16").embed_audio(files, batch_size=16)
    np.testing.assert_allclose(cli_bf16, lib_bf16, atol=1e-6)
    assert np.abs(cli_bf16 - cli_fp32).max() > 1e-5  # the flag changed the numbers: it was not dropped
    # float16 on CPU and --int8 with --dtype are usage errors (exit 2) with the fix in the message.
    assert cli_main([*base, "--out", str(tmp_path / "x.npz"), "--dtype", "float16"]) == 2
    assert "use dtype='bfloat16'" in capsys.readouterr().err
    assert cli_main([*base, "--out", str(tmp_path / "x.npz"), "--dtype", "bfloat16", "--int8"]) == 2
    assert "--int8" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_reduced_precision_on_cuda(dtype: str, esc_clips: list[str]) -> None:
    fp32 = openclap.load("openclap-mini", device="cuda")
    low = openclap.load("openclap-mini", device="cuda", dtype=dtype)
    _check_close(fp32.embed_audio(esc_clips), low.embed_audio(esc_clips), BF16_MIN_COSINE)
    _check_close(fp32.embed_text(PROMPTS), low.embed_text(PROMPTS), BF16_MIN_COSINE)


def test_compile_cache_is_keyed_by_weights_and_device(tmp_path, monkeypatch) -> None:
    """Compiled packages of other weights (or another device) are never reused: the key changes with them."""
    monkeypatch.setenv("OPENCLAP_COMPILE_CACHE", str(tmp_path))
    model = openclap.load("tiny", pretrained=False).model
    key = compile_cache_dir(model, torch.device("cpu"))
    assert key.parent == tmp_path and key == compile_cache_dir(copy.deepcopy(model), torch.device("cpu"))
    other = copy.deepcopy(model)
    with torch.no_grad():
        next(other.text_encoder.parameters()).view(-1)[0] *= -1  # one weight's sign
    assert compile_cache_dir(other, torch.device("cpu")) != key
    assert compile_cache_dir(model, torch.device("meta")) != key


def test_compile_cache_key_follows_the_cpu_flags(tmp_path, monkeypatch) -> None:
    """Kernels compiled for a CPU with AVX-512/AMX must not be loaded on one without: the key reads the
    flags line of /proc/cpuinfo (here a file in its format), and so does the benchmarks' machine line."""
    from openclap import hardware

    monkeypatch.setenv("OPENCLAP_COMPILE_CACHE", str(tmp_path))
    model = openclap.load("tiny", pretrained=False).model
    cpuinfo = tmp_path / "cpuinfo"
    keys = []
    for flags in ("fpu sse2 avx2 fma", "fpu sse2 avx2 fma avx512f amx_bf16", "fpu sse2 avx2 fma"):
        cpuinfo.write_text(
            f"processor\t: 0\nmodel name\t: Test CPU @ 2.0GHz\nflags\t\t: {flags}\n\n"
            f"processor\t: 1\nmodel name\t: Test CPU @ 2.0GHz\nflags\t\t: {flags}\n"
        )
        monkeypatch.setattr(hardware, "CPUINFO", str(cpuinfo))
        assert hardware.cpu_flags() == flags.split() and hardware.cpu_model() == "Test CPU @ 2.0GHz"
        keys.append(compile_cache_dir(model, torch.device("cpu")))
    assert keys[0] != keys[1] and keys[0] == keys[2]
    monkeypatch.setattr(hardware, "CPUINFO", str(tmp_path / "missing"))  # not Linux: no flags, a name
    assert hardware.cpu_flags() == [] and hardware.cpu_model()


@pytest.mark.slow  # AOT-compiling tiny's HTSAT and GPT-2: ~6 min on 2 loaded cores (once; the second load reads it)
def test_compiled_matches_eager(esc_clips: list[str], tmp_path, monkeypatch, caplog) -> None:
    monkeypatch.setenv("OPENCLAP_COMPILE_CACHE", str(tmp_path))
    eager = openclap.load("tiny", pretrained=False)
    compiled = openclap.load("tiny", pretrained=False, compile=True)
    assert compiled.compiled and not eager.compiled
    packages = sorted(tmp_path.glob("*/*.pt2"))
    assert [p.name for p in packages] == ["audio.pt2", "text.pt2"]
    stamps = [p.stat().st_mtime_ns for p in packages]
    caplog.clear()
    again = openclap.load(
        "tiny", pretrained=False, compile=True
    )  # a second process's path: loads, no compile
    assert [p.stat().st_mtime_ns for p in packages] == stamps and "compiling" not in caplog.text
    np.testing.assert_allclose(again.embed_audio(esc_clips[:3]), eager.embed_audio(esc_clips[:3]), atol=1e-4)
    np.testing.assert_allclose(again.embed_text(PROMPTS[:1]), eager.embed_text(PROMPTS[:1]), atol=1e-4)
    np.testing.assert_allclose(
        compiled.embed_audio(esc_clips[:3]), eager.embed_audio(esc_clips[:3]), atol=1e-4
    )
    np.testing.assert_allclose(compiled.embed_text(PROMPTS), eager.embed_text(PROMPTS), atol=1e-4)
    assert list(compiled.model.state_dict()) == list(eager.model.state_dict())  # keys unchanged: saving works
    # A copy of the compiled model (what quantize_int8 makes) runs its own weights, not the original's.
    copies = [ClapPipeline(copy.deepcopy(p.model), p.tokenizer) for p in (compiled, eager)]
    for p in copies:
        with torch.no_grad():
            for weight in p.model.text_encoder.parameters():
                weight.mul_(1.5)
    changed = copies[0].embed_text(PROMPTS)
    np.testing.assert_allclose(changed, copies[1].embed_text(PROMPTS), atol=1e-4)
    assert np.abs(changed - compiled.embed_text(PROMPTS)).max() > 1e-2


@pytest.mark.slow  # traces the text encoder before the compiler fails (~30 s)
def test_compile_failure_names_the_option(tmp_path: Path) -> None:
    """A real compiler failure (no C++ compiler for inductor) surfaces as an error naming --compile."""
    code = "import openclap; openclap.load('tiny', pretrained=False, compile=True).embed_text(['a dog barks', 'rain'])"
    env = {
        **os.environ,
        "CXX": str(tmp_path / "no-such-compiler"),
        "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "cache"),
        "OPENCLAP_COMPILE_CACHE": str(tmp_path / "openclap-compiled"),
    }
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600, check=False
    )
    assert out.returncode != 0
    # float32 compiles once, ahead of time, at load (openclap.compiled): the audio encoder comes first
    assert "compiling the audio encoder failed" in out.stderr and "--compile" in out.stderr
    assert "C++ compiler" in out.stderr
