"""The clapcap converter on state dicts laid out like msclap's ClapCaptionModel (built from clapcap-tiny)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from openclap.caption.config import get_caption_config
from openclap.caption.factory import create_caption_model, load_caption_model
from openclap.convert.clapcap import convert_clapcap, convert_clapcap_file
from openclap.convert.common import ConversionError


def msclap_layout(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """openclap caption keys -> msclap's ClapCaptionModel keys (the converter's inverse)."""
    out = {}
    for k, v in sd.items():
        if k.startswith("audio_encoder."):
            out["clap.base.htsat." + k[len("audio_encoder.") :]] = v
        elif k.startswith("audio_projection."):
            out["clap.projection." + k[len("audio_projection.") :]] = v
        elif k.startswith("mapper.net."):
            out["clap_project.model." + k[len("mapper.net.") :]] = v
        elif k.startswith("mapper."):
            out["clap_project." + k[len("mapper.") :]] = v
        elif k.startswith("decoder."):
            out["gpt." + k[len("decoder.") :]] = v
    for i in range(2):  # GPT-2's constant causal-mask buffers, as older transformers saved them
        out[f"gpt.transformer.h.{i}.attn.bias"] = torch.ones(1, 1, 4, 4)
    return out


@pytest.fixture(scope="module")
def model():
    return create_caption_model(get_caption_config("clapcap-tiny"), seed=3)


def test_round_trip_is_exact_and_reported(model) -> None:
    src = msclap_layout(model.state_dict())
    out, report = convert_clapcap(src, model.config, source="x.pth")
    fresh = create_caption_model(model.config, seed=9)
    fresh.load_state_dict(
        {**out, "decoder.lm_head.weight": out["decoder.transformer.wte.weight"]}, strict=True
    )
    for k, v in model.state_dict().items():
        assert torch.equal(v, fresh.state_dict()[k]), k
    assert report.source_keys == set(src)  # every source tensor accounted for
    reasons = {r for _, r in report.dropped}
    assert any("causal mask" in r for r in reasons)
    assert any("tied" in n for n in report.notes)


def test_mlp_mapper_keys(model) -> None:
    cfg = get_caption_config("clapcap-tiny").to_dict()
    cfg["mapper"]["type"] = "mlp"
    from openclap.caption.config import CaptionConfig

    mlp = create_caption_model(CaptionConfig.from_dict(cfg))
    src = msclap_layout(mlp.state_dict())
    assert "clap_project.model.0.weight" in src and "clap_project.model.2.bias" in src
    out, _ = convert_clapcap(src, mlp.config)
    assert torch.equal(out["mapper.net.2.bias"], mlp.state_dict()["mapper.net.2.bias"])
    with pytest.raises(ConversionError, match="mapper type"):
        convert_clapcap(src, model.config)  # an MLP checkpoint into a transformer-mapper preset


def test_strict_errors(model) -> None:
    src = msclap_layout(model.state_dict())
    broken = dict(src)
    broken.pop("clap_project.linear.weight")
    broken["clap.something_else"] = torch.zeros(1)
    with pytest.raises(ConversionError) as exc:
        convert_clapcap(broken, model.config, source="bad.pth")
    assert "mapper.linear.weight" in str(exc.value) and "clap.something_else" in str(exc.value)
    untied = dict(src)
    untied["gpt.lm_head.weight"] = untied["gpt.lm_head.weight"] + 1
    with pytest.raises(ConversionError, match="tied|differs"):
        convert_clapcap(untied, model.config)
    with pytest.raises(ConversionError, match="not an msclap clapcap"):
        convert_clapcap({"audio_encoder.base.x": torch.zeros(1)}, model.config)


def test_missing_gpt_needs_a_local_gpt2(model, tmp_path: Path) -> None:
    src = msclap_layout(model.state_dict())
    no_gpt = {k: v for k, v in src.items() if not k.startswith("gpt.")}
    with pytest.raises(ConversionError, match="gpt2="):
        convert_clapcap(no_gpt, model.config)
    # a transformers GPT-2 directory's keys have no "transformer." prefix
    gpt2 = {
        re.sub(r"^gpt\.transformer\.", "", k): v for k, v in src.items() if k.startswith("gpt.transformer.")
    }
    out, report = convert_clapcap(no_gpt, model.config, gpt2=gpt2)
    assert torch.equal(
        out["decoder.transformer.wte.weight"], model.state_dict()["decoder.transformer.wte.weight"]
    )
    assert any("gpt2 source" in n for n in report.notes)


def test_file_conversion_and_loading(model, tmp_path: Path) -> None:
    path = tmp_path / "clapcap_weights.pth"
    torch.save({"model": msclap_layout(model.state_dict())}, path)  # msclap's format
    _, report = convert_clapcap_file(path, model.config)
    assert report.format == "clapcap"
    loaded = load_caption_model("clapcap-tiny", checkpoint=path)
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
