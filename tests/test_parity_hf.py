"""Parity with transformers' ClapModel (the LAION architecture): a small random ClapModel saved with
``save_pretrained`` is converted with ``openclap convert hf`` and must give the same audio and text
embeddings as transformers on real clips and texts (cosine >= 0.99999, max abs diff <= 1e-4)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

transformers = pytest.importorskip("transformers")

import openclap
from openclap.convert.export import convert_to_dir
from openclap.text.tokenizer import bundled_tokenizer_dir

MIN_COS, MAX_ABS = 0.99999, 1e-4
TEXTS = [
    "a dog barks",
    "rain falling on a tin roof",
    "a chainsaw cutting wood, " + "very loud and harsh, " * 20,  # > 77 tokens: truncation must agree
    "wow!! a rooster crows",
]


def _randomise(model: torch.nn.Module, seed: int) -> None:
    """Give every float tensor a distinct random value so that any mapping mistake shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        tensors = list(model.named_parameters()) + [
            (n, b) for n, b in model.named_buffers() if b.is_floating_point()
        ]
        for name, t in tensors:
            if "running_var" in name:
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif "norm" in name.lower() and name.endswith("weight"):
                t.copy_(1 + 0.1 * torch.randn(t.shape, generator=g))
            elif "logit_scale" in name:
                t.fill_(2.5 if name.endswith("_a") else 1.5)
            else:
                t.copy_(0.05 * torch.randn(t.shape, generator=g))


def _roberta_like_vocab(directory: Path) -> None:
    """A RoBERTa-layout BPE tokenizer (vocab.json + merges.txt) built from the bundled GPT-2 files:
    <s>=0, <pad>=1, </s>=2, <unk>=3, GPT-2 tokens shifted by 4, <mask> last (roberta-base's own vocab
    is not available offline; the structure and the BPE are the same)."""
    src = bundled_tokenizer_dir("gpt2")
    vocab = json.loads((src / "vocab.json").read_text(encoding="utf-8"))
    out = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    out.update({tok: i + 4 for tok, i in vocab.items() if tok != "<|endoftext|>"})
    out["<mask>"] = len(out)
    (directory / "vocab.json").write_text(json.dumps(out), encoding="utf-8")
    (directory / "merges.txt").write_text((src / "merges.txt").read_text(encoding="utf-8"), encoding="utf-8")


def _make_hf_dir(out: Path, fusion: bool) -> Path:
    """A small random transformers ClapModel directory with its feature extractor and tokenizer files."""
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel

    torch.manual_seed(0)
    config = ClapConfig(
        audio_config={
            "num_mel_bins": 32, "spec_size": 128, "patch_embeds_hidden_size": 16, "depths": [1, 1, 2, 1],
            "num_attention_heads": [2, 2, 4, 4], "window_size": 4, "hidden_size": 128, "num_classes": 10,
            "enable_fusion": fusion, "fusion_type": "aff_2d" if fusion else None,
        },
        text_config={
            "vocab_size": 50265, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
            "intermediate_size": 64, "max_position_embeddings": 130, "layer_norm_eps": 1e-5,
        },
        projection_dim=24,
    )  # fmt: skip
    model = ClapModel(config).eval()
    _randomise(model, seed=2 if fusion else 1)
    model.save_pretrained(out)
    ClapFeatureExtractor(
        feature_size=32, sampling_rate=16000, hop_length=160, max_length_s=5, fft_window_size=512,
        frequency_min=50, frequency_max=8000, truncation="fusion" if fusion else "rand_trunc", padding="repeatpad",
    ).save_pretrained(out)  # fmt: skip
    _roberta_like_vocab(out)
    return out


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _make_hf_dir(tmp_path_factory.mktemp("hf_clap"), fusion=False)


@pytest.fixture(scope="module")
def waves(shared_data: Path) -> list[np.ndarray]:
    """Real 16 kHz recordings: ESC-10 clips of exactly 5 s (the feature extractor's max length: no crop)
    and two 3 s instrument notes (shorter: both sides repeat them whole, then zero-pad)."""
    from openclap.audio.io import load_audio

    esc = sorted((shared_data / "esc10" / "audio").glob("*.flac"))[::8][:4]
    notes = sorted((shared_data / "instruments" / "audio").rglob("*.flac"))[::15][:2]
    out = [load_audio(str(f), 16000) for f in esc + notes]
    assert [len(w) for w in out] == [80000] * 4 + [48000] * 2
    return out


def _compare(ours: np.ndarray | torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    ours_t = torch.as_tensor(np.asarray(ours), dtype=torch.float32)
    ref = F.normalize(ref.float(), dim=-1)
    return F.cosine_similarity(ours_t, ref, dim=-1).min().item(), (ours_t - ref).abs().max().item()


def test_hf_clapmodel_parity(hf_dir: Path, waves: list[np.ndarray], tmp_path: Path) -> None:
    from transformers import ClapFeatureExtractor, ClapModel, RobertaTokenizer

    out, report = convert_to_dir("hf", hf_dir, tmp_path / "converted")
    assert report.source_keys == set(load_file(str(hf_dir / "model.safetensors")))
    assert all(dst.startswith("audio_encoder.") for dst, _ in report.filled)  # only the unused AudioSet head
    pipe = openclap.load(out)

    ref_model = ClapModel.from_pretrained(hf_dir).eval()
    fe = ClapFeatureExtractor.from_pretrained(hf_dir)
    feats = fe(waves, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        ref_audio = ref_model.get_audio_features(input_features=feats["input_features"]).pooler_output
    cos, diff = _compare(pipe.embed_audio(waves, sample_rate=16000), ref_audio)
    print(f"transformers ClapModel audio: min cosine {cos:.8f}, max abs diff {diff:.2e}")
    assert cos >= MIN_COS and diff <= MAX_ABS

    tok = RobertaTokenizer.from_pretrained(hf_dir)
    enc = tok(TEXTS, padding="max_length", truncation=True, max_length=77, return_tensors="pt")
    ours_tok = pipe.tokenizer(TEXTS)
    assert torch.equal(ours_tok["input_ids"], enc["input_ids"])
    assert torch.equal(ours_tok["attention_mask"], enc["attention_mask"])
    with torch.no_grad():
        ref_text = ref_model.get_text_features(**enc).pooler_output
    cos, diff = _compare(pipe.embed_text(TEXTS), ref_text)
    print(f"transformers ClapModel text: min cosine {cos:.8f}, max abs diff {diff:.2e}")
    assert cos >= MIN_COS and diff <= MAX_ABS

    # The logit scale is transformers' audio-side one (logit_scale_a).
    assert pipe.model.logit_scale.item() == pytest.approx(ref_model.logit_scale_a.item())


def test_hf_fusion_model_parity(waves: list[np.ndarray], tmp_path: Path) -> None:
    """A fusion ClapModel (HTK mel front end) on clips of at most the window length: same embeddings.

    transformers' feature extractor flags a random clip as "longer" when none is (its fusion path then
    mixes in the fusion branch); the clips here are not longer, so the reference gets is_longer=False.
    """
    from transformers import ClapFeatureExtractor, ClapModel

    src = _make_hf_dir(tmp_path / "hf_fusion", fusion=True)
    out, report = convert_to_dir("hf", src, tmp_path / "converted")
    assert any("fusion" in reason for _, reason in report.dropped)
    pipe = openclap.load(out)
    assert pipe.model.config.audio.frontend.mel_scale == "htk"
    ref_model = ClapModel.from_pretrained(src).eval()
    feats = ClapFeatureExtractor.from_pretrained(src)(waves, sampling_rate=16000, return_tensors="pt")
    not_longer = torch.zeros(len(waves), 1, dtype=torch.bool)
    with torch.no_grad():
        ref = ref_model.get_audio_features(input_features=feats["input_features"], is_longer=not_longer)
    cos, diff = _compare(pipe.embed_audio(waves, sample_rate=16000), ref.pooler_output)
    print(f"transformers ClapModel (fusion) audio: min cosine {cos:.8f}, max abs diff {diff:.2e}")
    assert cos >= MIN_COS and diff <= MAX_ABS


def test_hf_wrong_preset_names_mismatch(hf_dir: Path, tmp_path: Path) -> None:
    """Forcing a preset that does not fit fails with a message naming the key and both shapes."""
    from openclap.convert import ConversionError

    with pytest.raises(ConversionError) as err:
        convert_to_dir("hf", hf_dir, tmp_path / "x", model="laion-htsat-tiny-roberta")
    msg = str(err.value)
    assert "shape mismatch" in msg and "laion-htsat-tiny-roberta" in msg
    assert "audio_encoder.bn0.weight: checkpoint (32,) vs preset (64,)" in msg
