"""Captioning training on real audio (tiny CLAP, a few steps): run dir, resume, final model, evaluation."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from openclap.caption.pipeline import load_captioner
from openclap.factory import create_model
from openclap.pipeline import ClapPipeline
from openclap.registry import get_model_config
from openclap.text.tokenizer import TextTokenizer
from openclap_train.captioning import (
    CAPTION_OPTIM,
    CaptionTrainConfig,
    load_caption_train_config,
    main,
    train_captioning,
)
from openclap_train.config import ManifestSpec, TrainConfigError


@pytest.fixture(scope="module")
def setup(write_esc10_caption_manifest, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("captrain")
    cfg = get_model_config("tiny")
    clap_dir = ClapPipeline(create_model(cfg), TextTokenizer(cfg.text)).save_pretrained(root / "clap")
    manifest, _, _ = write_esc10_caption_manifest(root / "manifest.csv")
    return {"root": root, "clap": str(clap_dir), "manifest": str(manifest)}


OPTIM = replace(CAPTION_OPTIM, lr=3e-3, warmup_steps=2)


def _config(setup: dict, **kw) -> CaptionTrainConfig:
    base = {
        "clap": setup["clap"],
        "mapper": {"prefix_length": 4, "clip_length": 4, "num_layers": 1, "num_heads": 2},
        "max_length": 16,
        "train_manifest": [ManifestSpec(path=setup["manifest"], split="train")],
        "val_manifest": [ManifestSpec(path=setup["manifest"], split="test")],
        "batch_size": 4,
        "optim": replace(CAPTION_OPTIM, warmup_steps=2),
        "max_steps": 6,
        "log_every": 2,
        "eval_every": 3,
        "save_every": 3,
        "beam_size": 2,
    }
    base.update(kw)
    return CaptionTrainConfig(**base)


def test_training_reduces_loss_saves_resumes_and_evaluates(setup: dict) -> None:
    cfg = _config(
        setup, test_manifest=[ManifestSpec(path=setup["manifest"], split="test")], optim=OPTIM, max_steps=6
    )
    run = setup["root"] / "run"
    result = train_captioning(cfg, run)
    assert result.step == 6
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "loss" in m] == [2, 4, 6]
    assert any("val_loss" in m for m in metrics)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000003.pt", "step_00000006.pt"]
    # the decoder started from the CLAP text tower's GPT-2
    ev = json.loads((run / "eval.json").read_text())
    assert ev["test_clips"] == 4 and "cider_d" in ev["model"] and "cider_d" in ev["nearest_caption_baseline"]
    cap = load_captioner(result.final_dir)
    out = cap.caption([ev["captions"][0]["path"]], generation=cap.generation_config(beam_size=2))
    assert out[0].ok and out[0].caption == ev["captions"][0]["caption"]

    # interrupted after 3 steps and resumed: the same weights as the uninterrupted run
    run2 = setup["root"] / "run2"
    shutil.copytree(run / "embeddings", run2 / "embeddings")  # same audio tower: the cache is reused
    train_captioning(_config(setup, optim=OPTIM, max_steps=3), run2)
    train_captioning(_config(setup, optim=OPTIM, max_steps=6), run2, resume="latest")
    a = load_file(str(run / "final" / "model.safetensors"))
    b = load_file(str(run2 / "final" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:  # bitwise: the engine reseeds every step and restores the optimiser, schedule and RNG
        assert torch.equal(a[k], b[k]), k


def test_prefix_mode_trains_only_the_mapper(setup: dict) -> None:
    from openclap_train.captioning import build_caption_model, set_trainable

    model, _ = build_caption_model(_config(setup, train="prefix"))
    params = set_trainable(model, "prefix")
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names and all(n.startswith("mapper.") for n in names)
    assert sum(p.numel() for p in params) == sum(p.numel() for p in model.mapper.parameters())
    # the decoder is the CLAP text tower's GPT-2, the audio tower the CLAP's
    from openclap.factory import load_model

    clap = load_model(setup["clap"])
    assert torch.equal(model.decoder.transformer.wte.weight, clap.text_encoder.model.wte.weight)
    assert torch.equal(model.audio_projection.linear1.weight, clap.audio_projection.linear1.weight)


def test_full_mode_runs_on_waveforms(setup: dict) -> None:
    run = setup["root"] / "full"
    result = train_captioning(_config(setup, train="full", max_steps=2, save_every=2, batch_size=2), run)
    assert result.step == 2 and (run / "final" / "caption_config.json").is_file()
    assert not (run / "embeddings").exists()


def test_config_errors(setup: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(TrainConfigError, match="train must be"):
        _config(setup, train="everything")
    with pytest.raises(TrainConfigError, match="exactly one"):
        CaptionTrainConfig()
    bad = tmp_path / "c.yaml"
    bad.write_text("task: captioning\nclap: x\nbatchsize: 3\n")
    with pytest.raises(TrainConfigError, match="unknown key"):
        load_caption_train_config(bad)
    assert main([str(tmp_path / "missing.yaml"), "--run-dir", str(tmp_path / "r")]) == 2
    assert "missing.yaml not found" in capsys.readouterr().err


def test_cli_entry_with_overrides_and_dispatch_check(setup: dict, tmp_path: Path) -> None:
    from openclap_train.captioning import is_captioning_config

    recipe = tmp_path / "cap.yaml"
    recipe.write_text(
        "task: captioning\n"
        f"clap: {setup['clap']}\n"
        "mapper: {prefix_length: 2, clip_length: 2, num_layers: 1, num_heads: 2}\n"
        "max_length: 12\n"
        f"train_manifest: [{{path: {setup['manifest']}, split: train}}]\n"
        "batch_size: 4\nmax_steps: 50\nlog_every: 1\n"
    )
    assert is_captioning_config(recipe)
    assert not is_captioning_config(
        Path(__file__).resolve().parents[1] / "configs" / "small-shared-data.yaml"
    )
    run = tmp_path / "run"
    argv = [
        str(recipe),
        "--run-dir",
        str(run),
        "--max-steps",
        "2",
        "--set",
        "train=prefix",
        "--set",
        "train_crops=1",
    ]
    assert main(argv) == 0
    assert (run / "final" / "model.safetensors").is_file()
    assert (run / "embeddings" / "train_crops.npy").is_file()  # one random-crop embedding set
    assert "train: prefix" in (run / "config.yaml").read_text()
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2]


def test_nearest_neighbours_and_nearest_caption_baseline() -> None:
    import numpy as np

    from openclap.caption.evaluate import nearest_caption_baseline
    from openclap_train.captioning import nearest_neighbours

    e = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]], dtype=np.float32)
    nn = nearest_neighbours(e, 2)
    assert nn.tolist() == [[0, 1], [1, 0], [2, 3], [3, 2]]  # itself first, then the closest other
    assert nearest_neighbours(e, 0) is None
    caps = ["a", "b", "c", "d"]
    assert nearest_caption_baseline(e, caps, np.array([[0.2, 1.0], [5.0, 0.1]])) == ["d", "a"]


def test_missing_clap_run_is_one_error_line_naming_the_path_and_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """`python -m openclap_train.captioning` on the shipped recipe before its CLAP run exists (issue 19)."""
    recipe = Path(__file__).resolve().parents[1] / "configs" / "caption-small-shared-data.yaml"
    monkeypatch.chdir(tmp_path)
    assert main([str(recipe), "--run-dir", "runs/caption-small", "--no-progress"]) == 2
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if " error: " in x]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert str(tmp_path / "runs" / "small-capval") in lines[0]  # where it looked
    assert "openclap train configs/small-shared-data-capval.yaml --run-dir runs/small-capval" in lines[0]
