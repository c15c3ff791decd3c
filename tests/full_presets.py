"""Full-size presets with random but trained-like weights, for the slow parity tests (ONNX, int8).

msclap-2022 (BERT) and the LAION presets (RoBERTa) take their tokenizers from the hub, which an offline
machine (CI) lacks: they run with ``full_size_tokenizer``'s local directories.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

import openclap
from openclap.registry import get_model_config
from openclap.text.tokenizer import bundled_tokenizer_dir

BERT_WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "dog", "bark", "##s", "rain", "on", "tin",
              "roof", ",", "then", "thunder", "far", "away", "!", "violin", "."]  # fmt: skip


def full_size_tokenizer(preset: str, tmp_path: Path) -> Path | None:
    """A local tokenizer directory for a preset whose tokenizer lives on the hub (None: bundled).

    ONNX-vs-PyTorch parity does not depend on which vocabulary, only on the ids reaching both paths, so
    these directories are made here, honestly synthetic: BERT (msclap-2022) gets a WordPiece vocab.txt of
    BERT-base's full size (30,522) with its special tokens at BERT's ids ([PAD] 0, [UNK] 100, [CLS] 101,
    [SEP] 102, [MASK] 103), the test texts' words and numbered placeholders; RoBERTa (LAION) gets GPT-2's
    bundled byte-level BPE files in RoBERTa's pipeline, its specials added after them (ids < 50,265).
    """
    encoder = get_model_config(preset).text.encoder
    if encoder == "gpt2":
        return None
    tok_dir = tmp_path / "tokenizer"
    if encoder == "roberta":
        shutil.copytree(bundled_tokenizer_dir("gpt2"), tok_dir)
        return tok_dir
    size = get_model_config(preset).text.transformer["vocab_size"]
    specials = {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]"}
    vocab = [specials.get(i, f"[unused{i}]") for i in range(size)]
    words = [w for w in BERT_WORDS if w not in specials.values()]
    vocab[104 : 104 + len(words)] = words
    tok_dir.mkdir()
    (tok_dir / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return tok_dir


@torch.no_grad()
def randomise(model: openclap.ClapModel) -> None:
    """Trained-like BatchNorm statistics (init has mean 0, var 1: an identity that would hide bugs) and
    variance-preserving weights (at init, tiny towers give nearly the same output for every input)."""
    g = torch.Generator().manual_seed(5)
    for p in model.parameters():
        if p.ndim >= 2:
            p.normal_(0.0, p[0].numel() ** -0.5, generator=g)
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            n = m.running_mean.shape
            if name.endswith("bn0"):  # over log-mel dB values
                m.running_mean.copy_(torch.randn(n, generator=g) * 10 - 40)
                m.running_var.copy_(torch.rand(n, generator=g) * 300 + 100)
            else:
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)


@torch.no_grad()
def calibrate_batchnorm(pipeline: openclap.ClapPipeline, clips: list[Path]) -> None:
    """BatchNorm statistics of the clips themselves, as training leaves them: with randomise's random
    statistics a full-depth CNN14 maps every clip to nearly one vector (two clips' embeddings differed by
    < 1e-3), which would make a parity check between constants."""
    model = pipeline.model
    cfg = model.config.audio
    length = round(cfg.duration * cfg.frontend.sample_rate)
    waves = [openclap.load_audio(c, cfg.frontend.sample_rate)[:length] for c in clips]
    batch = torch.stack(
        [torch.from_numpy(np.pad(w, (0, length - len(w)), mode="wrap")) for w in waves]
    ).float()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the calibration pass
    model.audio_encoder.train()
    model.audio_encoder(model.audio_frontend(batch))
    model.eval()


def full_preset(preset: str, tmp_path: Path, clips: list[Path]) -> openclap.ClapPipeline:
    """``preset`` at full size: random weights made trained-like (``randomise``, then BatchNorm statistics
    of ``clips``), with its bundled tokenizer or a local full-size one."""
    pipeline = openclap.load(preset, pretrained=False, tokenizer=full_size_tokenizer(preset, tmp_path))
    randomise(pipeline.model)
    calibrate_batchnorm(pipeline, clips)
    return pipeline
