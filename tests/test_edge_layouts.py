"""Directories in the layouts transformers itself writes convert and tokenise exactly as transformers does,
and a directory that lacks what is needed raises (naming the file and the fix) instead of guessing.

- transformers 5.x ``ClapProcessor.save_pretrained`` writes ``processor_config.json`` (feature extractor
  nested) and ``tokenizer.json``, and no ``preprocessor_config.json``;
- transformers 4.x tokenizers keep ``vocab.json`` + ``merges.txt`` with ``added_tokens.json`` and
  ``tokenizer_config.json``'s ``added_tokens_decoder`` (written here by hand in that layout).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

transformers = pytest.importorskip("transformers")

import openclap
from openclap.audio.io import load_audio
from openclap.convert import ConversionError
from openclap.convert.export import convert_to_dir
from openclap.convert.hf import read_hf_dir
from openclap.registry import get_model_config
from openclap.text.tokenizer import TextTokenizer, bundled_tokenizer_dir

DEMO = Path(openclap.__file__).parent / "assets" / "demo"
CLIPS = ["4-183992-A-dog.flac", "4-164859-A-rooster.flac", "fluidr3_p040_violin_m071_v110.flac"]
TEXTS = [
    "a dog barks",
    "hello <mask> world</s>",
    "a <extra> b<pad> and <s>x</s><unk>",
    "wow!! a rooster crows, " + "very loud, " * 30,  # longer than max_length: truncation must agree
]
MAX_LEN = 24


def _bpe_files(directory: Path) -> Path:
    """GPT-2's vocab.json + merges.txt (bundled) without RoBERTa's specials: they become added tokens."""
    directory.mkdir(parents=True, exist_ok=True)
    src = bundled_tokenizer_dir("gpt2")
    for name in ("vocab.json", "merges.txt"):
        shutil.copyfile(src / name, directory / name)
    return directory


def _roberta_cfg() -> openclap.config.TextConfig:
    return dataclasses.replace(get_model_config("laion-htsat-tiny-roberta").text, max_length=MAX_LEN)


def _assert_same_ids(directory: Path, reference, texts: list[str] = TEXTS) -> None:
    ours = TextTokenizer(_roberta_cfg(), directory)
    ref = reference(texts, padding="max_length", truncation=True, max_length=MAX_LEN, return_tensors="pt")
    got = ours(texts)
    assert got["input_ids"].tolist() == ref["input_ids"].tolist()
    assert got["attention_mask"].tolist() == ref["attention_mask"].tolist()
    assert ours.pad_token_id == reference.pad_token_id


# ------------------------------------------------------------------------------------- tokenizers


def _v4_dir(directory: Path, with_decoder: bool = True, with_added_json: bool = True) -> Path:
    """A transformers-4.x RoBERTa directory whose added tokens are in a non-default order (ids that a
    tokenizer appending its specials in its own order cannot guess) plus a non-special added token."""
    _bpe_files(directory)
    order = ["<pad>", "<s>", "</s>", "<unk>", "<mask>", "<extra>"]
    added = {t: 50257 + i for i, t in enumerate(order)}
    specials = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
                "pad_token": "<pad>", "cls_token": "<s>", "mask_token": "<mask>"}  # fmt: skip
    config: dict = {"tokenizer_class": "RobertaTokenizer", "model_max_length": 512, **specials}
    if with_decoder:
        flags = {"normalized": False, "rstrip": False, "single_word": False}
        config["added_tokens_decoder"] = {
            str(i): {"content": t, "lstrip": t == "<mask>", "special": t != "<extra>", **flags}
            for t, i in added.items()
        }
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    (directory / "special_tokens_map.json").write_text(json.dumps(specials))
    if with_added_json:
        (directory / "added_tokens.json").write_text(json.dumps(added))
    return directory


@pytest.mark.parametrize(
    "with_decoder, with_added_json",
    [(True, True), (False, True), (True, False)],
    ids=["both", "json", "decoder"],
)
def test_v4_added_tokens_keep_their_ids(tmp_path: Path, with_decoder: bool, with_added_json: bool) -> None:
    d = _v4_dir(tmp_path / "v4", with_decoder, with_added_json)
    ref = transformers.AutoTokenizer.from_pretrained(str(d))
    assert ref.convert_tokens_to_ids(["<pad>", "</s>", "<extra>"]) == [50257, 50259, 50262]
    _assert_same_ids(d, ref)


def test_v5_saved_roberta_tokenizer_ids(tmp_path: Path) -> None:
    """transformers 5 saves tokenizer.json (+ tokenizer_config.json); a bare vocab.json + merges.txt gets
    transformers' order for the specials it adds (<s>, </s>, <unk>, <pad>, <mask>). (transformers 5 gives a
    bare directory's <mask> lstrip=False, 4.x and roberta-base lstrip=True, as openclap does: no " <mask>" there.)"""
    bare = _bpe_files(tmp_path / "bare")
    ref = transformers.RobertaTokenizer.from_pretrained(str(bare))
    _assert_same_ids(bare, ref, [t.replace(" <mask>", "<mask>") for t in TEXTS])
    ref.add_tokens(["<extra>"])
    ref.save_pretrained(tmp_path / "v5")
    assert (tmp_path / "v5" / "tokenizer.json").is_file()
    _assert_same_ids(tmp_path / "v5", transformers.AutoTokenizer.from_pretrained(str(tmp_path / "v5")))


def test_conflicting_added_tokens_raise(tmp_path: Path) -> None:
    d = _v4_dir(tmp_path / "v4")
    (d / "added_tokens.json").write_text(json.dumps({"<s>": 50257, "<pad>": 50258}))
    with pytest.raises(ValueError, match=r"added_tokens\.json.*50257.*'<s>'.*'<pad>'"):
        TextTokenizer(_roberta_cfg(), d)
    (d / "added_tokens.json").write_text(json.dumps({"hello": 50300}))  # in vocab.json at another id
    (d / "tokenizer_config.json").write_text("{}")
    with pytest.raises(ValueError, match=r"vocab\.json.*'hello' id 31373.*50300"):
        TextTokenizer(_roberta_cfg(), d)


# ------------------------------------------------------------------------------ hf conversion


def _randomise(model: torch.nn.Module, seed: int) -> None:
    """Distinct random values in every float tensor, so that a front-end or mapping mistake shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in [*model.named_parameters(), *model.named_buffers()]:
            if not t.is_floating_point():
                continue
            if "running_var" in name:
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif "norm" in name.lower() and name.endswith("weight"):
                t.copy_(1 + 0.1 * torch.randn(t.shape, generator=g))
            elif "logit_scale" in name:
                t.fill_(2.5)
            else:
                t.copy_(0.05 * torch.randn(t.shape, generator=g))


@pytest.fixture(scope="module")
def v5_processor_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A transformers 5 ClapModel + ClapProcessor directory: ClapConfig()'s defaults with small towers,
    the default 48 kHz feature extractor with ``truncation="rand_trunc"`` (Slaney mel filters)."""
    out = tmp_path_factory.mktemp("hf5")
    config = transformers.ClapConfig(
        audio_config={"patch_embeds_hidden_size": 16, "depths": [1, 1, 1, 1], "num_attention_heads": [1, 2, 2, 4],
                      "hidden_size": 128, "num_classes": 4},
        text_config={"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64},
        projection_dim=16,
    )  # fmt: skip
    model = transformers.ClapModel(config).eval()
    _randomise(model, seed=5)
    model.save_pretrained(out)
    tokenizer = transformers.RobertaTokenizer.from_pretrained(str(_bpe_files(out / "bpe")))
    fe = transformers.ClapFeatureExtractor(truncation="rand_trunc")
    transformers.ClapProcessor(feature_extractor=fe, tokenizer=tokenizer).save_pretrained(out)
    assert (out / "processor_config.json").is_file() and not (out / "preprocessor_config.json").exists()
    return out


def test_v5_processor_dir_converts_exactly(v5_processor_dir: Path, tmp_path: Path) -> None:
    """Read ``processor_config.json``: with ClapFeatureExtractor's defaults instead (the old fallback: HTK
    filters) the audio embeddings were at cosine 0.18 to transformers' own."""
    pipe = openclap.load(convert_to_dir("hf", v5_processor_dir, tmp_path / "converted")[0])
    assert pipe.model.config.audio.frontend.mel_scale == "slaney"
    ref_model = transformers.ClapModel.from_pretrained(v5_processor_dir).eval()
    processor = transformers.ClapProcessor.from_pretrained(v5_processor_dir)
    waves = [load_audio(str(DEMO / c), 48000) for c in CLIPS]
    feats = processor.feature_extractor(waves, sampling_rate=48000, return_tensors="pt")
    texts = TEXTS[:1] + TEXTS[3:]
    enc = processor.tokenizer(
        texts, padding="max_length", truncation=True, max_length=77, return_tensors="pt"
    )
    with torch.no_grad():
        ref_audio = ref_model.get_audio_features(input_features=feats["input_features"]).pooler_output
        ref_text = ref_model.get_text_features(**enc).pooler_output
    assert pipe.tokenizer(texts)["input_ids"].tolist() == enc["input_ids"].tolist()
    for ours, ref in (
        (pipe.embed_audio(waves, sample_rate=48000), ref_audio),
        (pipe.embed_text(texts), ref_text),
    ):
        cos = F.cosine_similarity(torch.as_tensor(np.asarray(ours)), F.normalize(ref, dim=-1), dim=-1)
        assert cos.min().item() >= 0.99999


def test_hf_dir_without_feature_extractor_raises(v5_processor_dir: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copyfile(v5_processor_dir / "config.json", bare / "config.json")
    with pytest.raises(FileNotFoundError, match=r"preprocessor_config\.json nor processor_config\.json.*"
                       r"ClapProcessor\.save_pretrained"):  # fmt: skip
        read_hf_dir(bare)
    (bare / "processor_config.json").write_text(json.dumps({"processor_class": "ClapProcessor"}))
    with pytest.raises(ConversionError, match=r"processor_config\.json holds no ClapFeatureExtractor"):
        read_hf_dir(bare)
