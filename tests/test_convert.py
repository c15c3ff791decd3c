"""Converters: strict mapping with a full report, safe unpickling, wrong-preset errors, the CLI."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import openclap
from openclap import cli
from openclap.convert import (
    ConversionError,
    UnsafeCheckpointError,
    convert_checkpoint,
    convert_laion,
    convert_msclap,
    detect_format,
)
from openclap.convert.msclap import export_msclap
from openclap.factory import create_model
from openclap.registry import get_model_config

TEXTS = ["a dog barks", "wow!! rain on a roof", "a man says the number seven"]


def _randomised_tiny(seed: int = 0) -> openclap.model.ClapModel:
    model = create_model(get_model_config("tiny"), seed=seed)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():  # non-default BatchNorm statistics, so a dropped/misplaced buffer would show
        for name, t in model.named_buffers():
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif name.endswith("running_mean"):
                t.copy_(torch.randn(t.shape, generator=g))
    return model


def msclap_style_state_dict(model: openclap.model.ClapModel) -> dict[str, torch.Tensor]:
    """The tiny model in msclap's checkpoint layout, with the extra tensors msclap's files carry:
    torchlibrosa front-end kernels, HTSAT's persisted buffers and GPT-2's causal-mask buffers."""
    from openclap.audio.frontend import mel_filterbank

    cfg = model.config
    sd = export_msclap(model.state_dict(), cfg)
    fe = cfg.audio.frontend
    prefix = "audio_encoder.base.htsat."
    sd[prefix + "spectrogram_extractor.stft.conv_real.weight"] = torch.randn(fe.n_fft // 2 + 1, 1, fe.n_fft)
    sd[prefix + "spectrogram_extractor.stft.conv_imag.weight"] = torch.randn(fe.n_fft // 2 + 1, 1, fe.n_fft)
    design = fe.filterbank_sample_rate or fe.sample_rate
    sd[prefix + "logmel_extractor.melW"] = torch.from_numpy(
        mel_filterbank(design, fe.n_fft, fe.n_mels, fe.f_min, fe.f_max)
    ).float()
    for key, value in model.audio_encoder.msclap_buffers().items():
        sd[prefix + key] = value.clone()
    n = cfg.text.transformer["n_positions"]
    for i in range(cfg.text.transformer["n_layer"]):
        sd[f"caption_encoder.base.h.{i}.attn.bias"] = torch.tril(torch.ones(n, n, dtype=torch.bool)).view(
            1, 1, n, n
        )
        sd[f"caption_encoder.base.h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    return sd


@pytest.fixture()
def with_convert_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """`openclap convert` as cli.py registers it (no test adds a command of its own)."""


@pytest.fixture(scope="module")
def tiny_model() -> openclap.model.ClapModel:
    return _randomised_tiny()


@pytest.fixture(scope="module")
def msclap_pth(tiny_model: openclap.model.ClapModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("msclap") / "tiny_msclap.pth"
    torch.save({"model": msclap_style_state_dict(tiny_model)}, path)
    return path


def test_msclap_conversion_maps_every_tensor(tiny_model: openclap.model.ClapModel, msclap_pth: Path) -> None:
    source = torch.load(msclap_pth, weights_only=True)["model"]
    assert detect_format(source) == "msclap"
    converted, report = convert_checkpoint(msclap_pth, tiny_model.config)
    assert report.source_keys == set(source)  # every source tensor accounted for
    own = tiny_model.state_dict()
    assert set(converted) == set(own)
    assert all(torch.equal(converted[k], own[k]) for k in own)
    reasons = {r for _, r in report.dropped}
    assert any("torchlibrosa" in r for r in reasons) and any("causal mask" in r for r in reasons)
    assert len(report.checked) == len(tiny_model.audio_encoder.msclap_buffers())
    assert any("equals the preset's mel filterbank" in n for n in report.notes)
    assert not report.filled
    summary = report.summary()
    assert f"{len(source)} source tensors" in summary and "dropped" in summary


def test_unknown_tensor_is_an_error(tiny_model: openclap.model.ClapModel, msclap_pth: Path) -> None:
    source = dict(torch.load(msclap_pth, weights_only=True)["model"])
    source["caption_encoder.surprise.weight"] = torch.zeros(3)
    with pytest.raises(ConversionError, match=r"no rule maps: \['caption_encoder.surprise.weight'\]"):
        convert_msclap(source, tiny_model.config)


def test_wrong_preset_names_key_shapes_and_likely_preset(msclap_pth: Path) -> None:
    # An HTSAT + GPT-2 msclap checkpoint against the CNN14 + BERT preset.
    with pytest.raises(ConversionError) as err:
        convert_checkpoint(msclap_pth, get_model_config("msclap-2022"))
    msg = str(err.value)
    assert "does not fit preset 'msclap-2022'" in msg
    assert "looks like 'msclap-2023'" in msg and "--model msclap-2023" in msg
    # Same architecture, other sizes: each mismatch names the key and both shapes.
    small = get_model_config("small")
    with pytest.raises(ConversionError) as err:
        convert_checkpoint(msclap_pth, small)
    msg = str(err.value)
    assert "shape mismatch" in msg
    assert "audio_encoder.patch_embed.proj.weight: checkpoint (16, 1, 4, 4) vs preset" in msg


def test_changed_htsat_geometry_fails_on_buffers(
    tiny_model: openclap.model.ClapModel, msclap_pth: Path
) -> None:
    source = dict(torch.load(msclap_pth, weights_only=True)["model"])
    key = next(k for k in source if k.endswith("attn.relative_position_index"))
    source[key] = source[key].flip(0)
    with pytest.raises(ConversionError, match="derived buffer"):
        convert_msclap(source, tiny_model.config)


def test_laion_converter_rejects_msclap_preset() -> None:
    with pytest.raises(ConversionError, match="use one of the laion-\\* presets"):
        convert_laion({"audio_branch.x": torch.zeros(1)}, get_model_config("msclap-2023"))


class _WritesAFile:
    """Unpickling this would create ``target`` (a stand-in for arbitrary code)."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (str(self.target), "w"))


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_malicious_pickle_is_refused(tmp_path: Path, writer: str) -> None:
    target = tmp_path / "pwned.txt"
    path = tmp_path / "evil.pth"
    payload = {"model": {"audio_encoder.bn0.weight": torch.zeros(2), "x": _WritesAFile(target)}}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(UnsafeCheckpointError) as err:
        convert_checkpoint(path, get_model_config("tiny"))
    assert not target.exists()
    msg = str(err.value)
    assert str(path) in msg and "weights_only=True" in msg and "arbitrary code" in msg
    # The same through the public loading path.
    with pytest.raises(UnsafeCheckpointError):
        openclap.load("tiny", checkpoint=path)
    assert not target.exists()


def test_cli_convert_end_to_end(
    tiny_model: openclap.model.ClapModel,
    msclap_pth: Path,
    tmp_path: Path,
    shared_data: Path,
    capsys,
    with_convert_command: None,
) -> None:
    """`openclap convert msclap` -> directory -> load -> save_pretrained -> load: identical embeddings."""
    out = tmp_path / "converted"
    assert cli.main(["convert", "msclap", str(msclap_pth), "--out", str(out), "--model", "tiny"]) == 0
    printed = capsys.readouterr().out
    assert "mapped" in printed and f"wrote {out}" in printed
    assert {p.name for p in out.iterdir()} >= {
        "config.json",
        "model.safetensors",
        "tokenizer",
        "conversion_report.json",
    }
    report = json.loads((out / "conversion_report.json").read_text())
    assert report["format"] == "msclap" and report["preset"] == "tiny"

    clips = sorted((shared_data / "esc10" / "audio").glob("*.flac"))[:3]
    first = openclap.load(out)
    reference = openclap.pipeline.ClapPipeline(tiny_model, first.tokenizer)
    a1, t1 = first.embed_audio(clips), first.embed_text(TEXTS)
    np.testing.assert_array_equal(a1, reference.embed_audio(clips))
    np.testing.assert_array_equal(t1, reference.embed_text(TEXTS))
    again = tmp_path / "again"
    first.save_pretrained(again)
    second = openclap.load(again)
    np.testing.assert_array_equal(second.embed_audio(clips), a1)
    np.testing.assert_array_equal(second.embed_text(TEXTS), t1)


def test_cli_convert_reports_wrong_preset(
    msclap_pth: Path, tmp_path: Path, with_convert_command: None, capsys
) -> None:
    code = cli.main(
        ["convert", "msclap", str(msclap_pth), "--out", str(tmp_path / "x"), "--model", "msclap-2022"]
    )
    assert code == 2
    assert "does not fit preset 'msclap-2022'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_clapcap_audio_tower_with_text_from(tiny_model: openclap.model.ClapModel, msclap_pth: Path) -> None:
    """clapcap holds CLAP's audio tower only (as clap.*): its text tower comes from a CLAP checkpoint."""
    other = _randomised_tiny(seed=7)
    ours = msclap_style_state_dict(other)
    clapcap = {
        "clap." + k[len("audio_encoder.") :]: v for k, v in ours.items() if k.startswith("audio_encoder.")
    }
    clapcap["gpt.transformer.wte.weight"] = torch.zeros(4, 2)
    clapcap["clap_project.linear.weight"] = torch.zeros(2, 2)
    with pytest.raises(ConversionError, match="--text-from CLAP_weights_2023.pth"):
        convert_msclap(clapcap, tiny_model.config)
    text_source = torch.load(msclap_pth, weights_only=True)["model"]
    converted, report = convert_msclap(clapcap, tiny_model.config, text_source=text_source)
    for key, value in converted.items():
        expected = other.state_dict()[key] if key.startswith("audio_") else tiny_model.state_dict()[key]
        assert torch.equal(value, expected), key
    assert {"gpt.transformer.wte.weight", "clap_project.linear.weight"} <= {s for s, _ in report.dropped}


def _tiny_laion_config() -> openclap.config.ClapConfig:
    """A small HTSAT + RoBERTa + LAION-projection config (the laion-* presets' architecture, tiny sizes)."""
    data = get_model_config("tiny").to_dict()
    data.update(name="tiny-laion", projection="laion", embed_dim=24)
    data["audio"]["pad_mode"] = "repeatpad"
    data["text"] = {
        "encoder": "roberta",
        "transformer": {
            "vocab_size": 300, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
            "intermediate_size": 64, "max_position_embeddings": 40, "type_vocab_size": 1, "layer_norm_eps": 1e-5,
            "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2,
        },
        "pooling": "pooler", "max_length": 20, "tokenizer": "roberta-base", "padding": "max_length",
        "truncation": "right",
    }  # fmt: skip
    return openclap.config.ClapConfig.from_dict(data)


def test_laion_conversion_maps_every_tensor(tmp_path: Path) -> None:
    """A LAION training checkpoint ({'state_dict': {'module.' + key}}, fusion branch, MLP heads, second
    temperature) converts to exactly the model it was made from; the extras are dropped with reasons."""
    config = _tiny_laion_config()
    model = create_model(config, seed=3)
    renames = {"audio_encoder.": "audio_branch.", "text_encoder.model.": "text_branch."}
    laion: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        if key == "logit_scale":
            laion["logit_scale_a"] = value
            continue
        for proj in ("audio_projection.", "text_projection."):
            if key.startswith(proj):
                key = key.replace("linear1.", "0.").replace("linear2.", "2.")
        for old, new in renames.items():
            if key.startswith(old):
                key = new + key[len(old) :]
        laion[key] = value
    for key, value in model.audio_encoder.msclap_buffers().items():
        laion["audio_branch." + key] = value
    laion["audio_branch.logmel_extractor.melW"] = torch.zeros(3, 2)
    laion["audio_branch.patch_embed.mel_conv2d.weight"] = torch.zeros(16, 1, 4, 12)
    laion["audio_branch.patch_embed.fusion_model.local_att.0.weight"] = torch.zeros(4, 16, 1, 1)
    laion["text_branch.embeddings.position_ids"] = torch.arange(40).unsqueeze(0)
    laion["logit_scale_t"] = torch.tensor(1.0)
    laion["audio_transform.sequential.0.weight"] = torch.zeros(24, 24)
    laion["text_transform.sequential.0.weight"] = torch.zeros(24, 24)
    path = tmp_path / "630k-fusion-best.pt"
    torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in laion.items()}}, path)

    converted, report = convert_checkpoint(path, config)
    assert report.format == "laion"
    assert report.source_keys == set(laion)
    own = model.state_dict()
    assert set(converted) == set(own) and all(torch.equal(converted[k], own[k]) for k in own)
    dropped = dict(report.dropped)
    assert "fusion" in dropped["audio_branch.patch_embed.mel_conv2d.weight"]
    assert "second temperature" in dropped["logit_scale_t"]
    assert any("fusion checkpoint" in n for n in report.notes)
    # Against the published preset: the sizes differ; each mismatch names the key and both shapes.
    with pytest.raises(
        ConversionError, match=r"shape mismatch.*audio_encoder\.bn0\.weight: checkpoint \(32,\)"
    ):
        convert_checkpoint(path, get_model_config("laion-htsat-tiny-roberta"))


@pytest.mark.parametrize("name", ["msclap-2023", "msclap-2022", "laion-htsat-tiny-roberta"])
def test_presets_build_on_the_meta_device(name: str) -> None:
    """The converters' shape check builds the target on the meta device (instant, no memory); a module that
    computes values at build time must do so on the CPU explicitly, or every conversion builds twice."""
    with torch.device("meta"):
        model = openclap.model.ClapModel(get_model_config(name))
    assert next(model.parameters()).is_meta
