"""ONNX export (`openclap export onnx`) and its torch-free runtime (`openclap.onnx.load`) vs the PyTorch path.

Small variants of each architecture family (msclap-2023: HTSAT + GPT-2 with msclap's pad/suffix quirks and
32 kHz filterbank; msclap-2022: CNN14 + BERT; LAION: HTSAT + RoBERTa pooler, 48 kHz, repeatpad) keep the
presets' front ends and text rules and shrink only the networks, with random weights; openclap-mini is
the bundled trained model. Full presets run in the slow suite.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from full_presets import BERT_WORDS, full_preset, randomise

import openclap
import openclap.onnx
from openclap.cli import main as cli_main
from openclap.config import ClapConfig
from openclap.onnx.export import export_onnx
from openclap.registry import get_model_config
from openclap.text.tokenizer import TextTokenizer, bundled_tokenizer_dir

DEMO = Path(openclap.__file__).parent / "assets" / "demo"
CLIPS = [DEMO / "4-183992-A-dog.flac", DEMO / "3_theo_0.flac", DEMO / "fluidr3_p040_violin_m071_v110.flac"]
TEXTS = ["a dog barks", "rain on a tin roof, then thunder far away", "!", "Violin."]
MIN_COSINE = 0.99999
SMALL_HTSAT = {"embed_dim": 16, "depths": [1, 1], "num_heads": [1, 2], "window_size": 8, "num_classes": 10}


def small_variant(preset: str, tmp_path: Path) -> tuple[ClapConfig, Path]:
    """The preset with its front end and text rules, a tiny network, and a local tokenizer directory."""
    data = get_model_config(preset).to_dict()
    data["name"] = f"{preset}-small"
    audio, text = data["audio"], data["text"]
    if audio["encoder"] == "htsat":
        audio["htsat"] = {**audio["htsat"], **SMALL_HTSAT}
    else:
        audio["cnn14"] = {"channels": [8, 16, 32, 32, 64, 64], "num_classes": 10}
    tok_dir = tmp_path / "tokenizer"
    if text["encoder"] == "bert":
        tok_dir.mkdir()
        (tok_dir / "vocab.txt").write_text("\n".join(BERT_WORDS) + "\n")
        text["transformer"] = {"vocab_size": len(BERT_WORDS), "hidden_size": 32, "num_hidden_layers": 1,
                               "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 128}  # fmt: skip
    elif text["encoder"] == "roberta":  # GPT-2's byte-level BPE files in RoBERTa's pipeline (+ its specials)
        shutil.copytree(bundled_tokenizer_dir("gpt2"), tok_dir)
        text["transformer"] = {**text["transformer"], "hidden_size": 32, "num_hidden_layers": 1,
                               "num_attention_heads": 2, "intermediate_size": 64}  # fmt: skip
    else:
        shutil.copytree(bundled_tokenizer_dir("gpt2"), tok_dir)
        text["transformer"] = {
            **text["transformer"],
            "n_embd": 32,
            "n_layer": 1,
            "n_head": 2,
            "n_positions": 128,
        }
    text["tokenizer"] = str(tok_dir)
    data["embed_dim"] = 24
    return ClapConfig.from_dict(data), tok_dir


def check_parity(pipeline: openclap.ClapPipeline, out: Path) -> None:
    export_onnx(pipeline, out)
    runtime = openclap.onnx.load(out, threads=1)
    long_clip = np.concatenate(
        [openclap.load_audio(c, 22050) for c in CLIPS]
    )  # > one window: several windows
    for inputs, batch_size in (([*CLIPS, (long_clip, 22050)], 2), ([CLIPS[0]], 8)):
        ref = pipeline.embed_audio(inputs, batch_size=batch_size)
        got = runtime.embed_audio(inputs, batch_size=batch_size)
        cos = (ref * got).sum(1)
        print(f"{pipeline.config.name} audio cosine to PyTorch: min {cos.min():.7f}")
        assert got.shape == ref.shape and cos.min() >= MIN_COSINE
    assert float(np.abs(ref[0] - pipeline.embed_audio(CLIPS[1:2])[0]).max()) > 1e-3  # inputs matter
    for texts in (TEXTS, TEXTS[:1]):
        ref, got = pipeline.embed_text(texts), runtime.embed_text(texts)
        cos = (ref * got).sum(1)
        print(f"{pipeline.config.name} text cosine to PyTorch: min {cos.min():.7f}")
        assert got.shape == ref.shape and cos.min() >= MIN_COSINE
    # Across inputs the embeddings differ (the comparison above is not between constants).
    assert float(np.abs(got[0] - runtime.embed_text(TEXTS[1:2])[0]).max()) > 1e-3


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: one intra-op thread, restored after


@pytest.mark.parametrize("preset", ["msclap-2023", "msclap-2022", "laion-htsat-tiny-roberta"])
def test_small_variants_match_pytorch(preset: str, tmp_path: Path) -> None:
    config, tok_dir = small_variant(preset, tmp_path)
    torch.manual_seed(0)
    model = openclap.ClapModel(config).eval()
    randomise(model)
    pipeline = openclap.ClapPipeline(model, TextTokenizer(config.text, tok_dir))
    check_parity(pipeline, tmp_path / "onnx")


def test_openclap_mini_matches_pytorch_through_the_cli(tmp_path: Path) -> None:
    out = tmp_path / "onnx"
    assert cli_main(["export", "onnx", "openclap-mini", "--out", str(out)]) == 0
    pre = json.loads((out / "preprocessing.json").read_text())
    pipeline = openclap.load("openclap-mini")
    assert pre["audio"]["sample_rate"] == pipeline.sample_rate == 16000
    assert pre["config"] == pipeline.config.to_dict()
    check_parity(pipeline, tmp_path / "again")
    a = openclap.onnx.load(out).embed_audio(CLIPS[:1])
    b = openclap.onnx.load(tmp_path / "again").embed_audio(CLIPS[:1])
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_runtime_imports_and_runs_without_torch(tmp_path: Path) -> None:
    """openclap.onnx needs no PyTorch: run it in a process where importing torch fails."""
    export_onnx(openclap.load("tiny", pretrained=False), tmp_path)
    expected = openclap.load("tiny", pretrained=False)
    code = (
        "import sys, numpy as np; sys.modules['torch'] = None\n"  # any `import torch` now raises
        "import openclap.onnx\n"
        f"m = openclap.onnx.load({str(tmp_path)!r})\n"
        f"a = m.embed_audio([{str(CLIPS[0])!r}]); t = m.embed_text(['a dog barks'])\n"
        "np.save(sys.argv[1], np.concatenate([a, t]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "out.npy")], check=False, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    got = np.load(tmp_path / "out.npy")
    ref = np.concatenate([expected.embed_audio([CLIPS[0]]), expected.embed_text(["a dog barks"])])
    assert float((got * ref).sum(1).min()) >= MIN_COSINE


def test_incomplete_export_names_the_missing_file(tmp_path: Path) -> None:
    export_onnx(openclap.load("tiny", pretrained=False), tmp_path)
    (tmp_path / "text.onnx").unlink()
    with pytest.raises(FileNotFoundError, match=r"text\.onnx is missing.*openclap export onnx"):
        openclap.onnx.load(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["msclap-2023", "msclap-2022", "laion-htsat-tiny-roberta"])
def test_full_presets_match_pytorch(preset: str, tmp_path: Path) -> None:
    """Full-size networks (random weights; the bundled tokenizer or a local full-size one)."""
    check_parity(full_preset(preset, tmp_path, CLIPS), tmp_path / "onnx")
