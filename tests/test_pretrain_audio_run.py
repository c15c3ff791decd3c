"""Multi-task pretraining runs on real audio: exact resume, metrics, CLI, and hand-over of final/ to CLAP."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from openclap.config import ClapConfig
from openclap.factory import CheckpointError, create_model, resolve_config
from openclap_train.audio_tower import TOWER_WEIGHTS, load_audio_tower, read_audio_tower
from openclap_train.multitask.config import load_pretrain_config
from openclap_train.multitask.train import model_config_of, pretrain

OVERRIDES = {"audio": {"duration": 1.0}}


def _recipe(data: Path, **extra: object) -> dict:
    fsdd, inst = str(data / "fsdd" / "manifest.csv"), str(data / "instruments" / "manifest.csv")
    recipe = {
        "model": "tiny",
        "model_overrides": OVERRIDES,
        "tasks": [
            {
                "name": "digit",
                "manifest": {"path": fsdd, "split": "train", "include": {"take": ["10"]}, "max_items": 12},
                "target": "digit",
                # three speakers saying 0, 1, 2 (the trained digits): targets that differ from row to row
                "val_manifest": {
                    "path": fsdd,
                    "split": "test",
                    "include": {
                        "take": ["0"],
                        "digit": ["0", "1", "2"],
                        "speaker": ["jackson", "theo", "nicolas"],
                    },
                    "max_items": 9,
                },
            },
            {
                "name": "tags",
                "manifest": {"path": inst, "split": "train", "max_items": 8},
                "target": ["register", "dynamics"],
                "type": "multi_label",
                "val_manifest": {"path": inst, "split": "test", "max_items": 4},
            },
            {
                "name": "pitch",
                "manifest": {"path": inst, "split": "train", "max_items": 8},
                "target": "midi_pitch",
                "type": "regression",
                "weight": 0.5,
                "val_manifest": {"path": inst, "split": "test", "max_items": 4},
            },
        ],
        "sampling": {"policy": "temperature", "temperature": 0.5, "batches": "mixed"},
        "head": {"hidden": 8, "dropout": 0.1},
        "augment": {"gain_db": 3.0},
        "batch_size": 4,
        "optim": {"lr": 3e-3, "warmup_steps": 1, "grad_clip": 1.0},
        "max_steps": 4,
        "log_every": 1,
        "save_every": 2,
        "keep_checkpoints": 5,
        "seed": 7,
    }
    recipe.update(extra)
    return recipe


def _config(data: Path, **extra: object):
    return load_pretrain_config(None, None, _recipe(data, **extra))


@pytest.fixture(scope="module")
def finished_run(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("pt") / "run"
    result = pretrain(_config(shared_data), run)
    assert result.step == 4 and result.final_dir == run / "final"
    return run


def test_run_directory_metrics_and_final(finished_run: Path) -> None:
    records = [json.loads(line) for line in (finished_run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if "loss" in r]
    assert [r["step"] for r in train] == [1, 2, 3, 4]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in train)
    assert any(k.startswith("train/") for k in train[-1])
    val = [r for r in records if "val/digit/acc" in r][-1]
    assert {"val/digit/acc", "val/digit/loss", "val/tags/mAP", "val/pitch/mae", "val/pitch/r2"} <= set(val)
    _assert_val_recomputed(finished_run, val)
    tasks = json.loads((finished_run / "final" / "tasks.json").read_text())
    assert [t["name"] for t in tasks] == ["digit", "tags", "pitch"]
    assert tasks[1]["classes"] == ["high", "loud", "low", "middle", "soft"] and "scale" in tasks[2]
    tower = load_file(str(finished_run / "final" / TOWER_WEIGHTS))
    assert tower and not any(k.startswith("heads.") for k in tower)  # heads dropped
    assert all(k.startswith(("audio_frontend.", "audio_encoder.")) for k in tower)


def _assert_val_recomputed(run: Path, logged: dict) -> None:
    """The step-4 ``val/*`` numbers equal ones recomputed clip by clip from the step-4 checkpoint, with the
    targets read from the manifests' raw columns (digit label, MIDI pitch) rather than the task encoding."""
    import csv

    import numpy as np
    import torch.nn.functional as F

    from openclap.audio.io import load_audio
    from openclap.audio.windows import split_windows
    from openclap_train.multitask.tasks import load_tasks
    from openclap_train.multitask.train import build_model

    config = load_pretrain_config(run / "config.yaml")
    tasks = {t.name: t for t in load_tasks(config.tasks)}
    clap_config = model_config_of(config)
    model = build_model(config, list(tasks.values()), clap_config)
    state = torch.load(run / "checkpoints" / "step_00000004.pt", weights_only=True)["model"]
    model.load_state_dict(state)
    model.eval()
    audio = clap_config.audio
    hop = round(audio.hop_seconds * audio.sample_rate)

    def raw(task: str, column: str) -> list[str]:
        manifest = Path(tasks[task].spec.manifest.path)
        with open(manifest, newline="", encoding="utf-8") as f:
            by_name = {Path(r["path"]).name: r[column] for r in csv.DictReader(f)}
        return [by_name[Path(p).name] for p in tasks[task].val_paths]

    def head_outputs(task: str) -> torch.Tensor:
        rows = []
        with torch.no_grad():
            for path in tasks[task].val_paths:  # one clip at a time: no batching shared with the trainer
                wave = torch.from_numpy(load_audio(path, audio.sample_rate))
                windows, _ = split_windows(wave, audio.num_samples, hop, audio.pad_mode, audio.sample_rate)
                rows.append(model.heads[task](model.features(windows).mean(0, keepdim=True))[0])
        return torch.stack(rows)

    digits = raw("digit", "digit")
    classes = tasks["digit"].classes
    truth = torch.tensor([classes.index(d) for d in digits])
    out = head_outputs("digit")
    acc = float((out.argmax(1) == truth).float().mean())
    assert logged["val/digit/acc"] == pytest.approx(acc, abs=1e-6)
    assert logged["val/digit/loss"] == pytest.approx(float(F.cross_entropy(out, truth)), rel=1e-4)
    pitch = np.array([float(v) for v in raw("pitch", "midi_pitch")])
    task = tasks["pitch"]
    pred = head_outputs("pitch")[:, 0].double().numpy() * task.scale + task.offset  # back to MIDI units
    assert logged["val/pitch/mae"] == pytest.approx(np.abs(pred - pitch).mean(), rel=1e-4)
    r2 = 1 - ((pred - pitch) ** 2).sum() / ((pitch - pitch.mean()) ** 2).sum()
    assert logged["val/pitch/r2"] == pytest.approx(r2, rel=1e-4, abs=1e-6)


def test_resume_is_bitwise_exact(shared_data: Path, finished_run: Path, tmp_path: Path) -> None:
    """A run stopped after step 2 and resumed with --resume latest ends with the uninterrupted weights."""
    run = tmp_path / "resumed"
    shutil.copytree(finished_run, run)
    for name in ("step_00000003.pt", "step_00000004.pt"):  # as if killed right after saving step 2
        (run / "checkpoints" / name).unlink(missing_ok=True)
    shutil.rmtree(run / "final")
    result = pretrain(_config(shared_data), run, resume="latest")
    assert result.step == 4
    a = load_file(str(finished_run / "final" / TOWER_WEIGHTS))
    b = load_file(str(run / "final" / TOWER_WEIGHTS))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    full_a = torch.load(finished_run / "checkpoints" / "step_00000004.pt", weights_only=True)["model"]
    full_b = torch.load(run / "checkpoints" / "step_00000004.pt", weights_only=True)["model"]
    assert all(torch.equal(full_a[k], full_b[k]) for k in full_a)  # heads too
    steps = [
        json.loads(line)["step"]
        for line in (run / "metrics.jsonl").read_text().splitlines()
        if "loss" in json.loads(line)
    ]
    assert steps == [1, 2, 3, 4]  # lines after the checkpoint were rewritten, not duplicated


def test_final_tower_loads_strictly_into_clap(shared_data: Path, finished_run: Path) -> None:
    config, tower = read_audio_tower(finished_run / "final")
    assert config.audio.duration == 1.0
    clap = create_model(config, seed=123)
    load_audio_tower(clap, finished_run / "final")
    own = clap.state_dict()
    assert all(torch.equal(own[k], v) for k, v in tower.items())
    # another audio config (the plain tiny preset: 5 s crops) is refused with the difference named
    with pytest.raises(CheckpointError, match="duration"):
        load_audio_tower(create_model(resolve_config("tiny")), finished_run / "final")
    # same audio config, different encoder shapes: refused, keys named
    data = config.to_dict()
    data["audio"]["htsat"]["embed_dim"] = 8
    with pytest.raises(CheckpointError):
        load_audio_tower(create_model(ClapConfig.from_dict(data)), finished_run / "final")
    with pytest.raises(FileNotFoundError, match="not an audio-tower directory"):
        load_audio_tower(clap, shared_data)


def test_openclap_train_starts_from_the_tower(shared_data: Path, finished_run: Path, tmp_path: Path) -> None:
    """init_audio hand-over into `openclap train`: with a frozen audio tower the CLAP audio encoder is the tower."""
    import yaml

    import openclap
    from openclap_train.config import TrainConfig, build
    from openclap_train.train import train

    clap_cfg = build(
        TrainConfig,
        {
            "model": "tiny",
            "model_overrides": OVERRIDES,
            "tokenizer": "train",
            "tokenizer_vocab_size": 300,
            "train_manifest": [
                {"path": str(shared_data / "fsdd" / "manifest.csv"), "split": "train", "max_items": 8}
            ],
            "batch_size": 4,
            "max_steps": 1,
            "freeze_audio": True,
            "save_every": 1,
            "seed": 1,
            "init_audio": str(finished_run / "final"),
        },
    )
    result = train(clap_cfg, tmp_path / "clap")
    assert yaml.safe_load((tmp_path / "clap" / "config.yaml").read_text())["init_audio"].endswith("final")
    model = openclap.load(str(result.final_dir)).model  # the CLAP model directory openclap train wrote
    tower = load_file(str(finished_run / "final" / TOWER_WEIGHTS))
    own = model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in tower.items())
    # a tower of another audio config stops the CLAP run before it starts
    with pytest.raises(CheckpointError):
        bad = build(TrainConfig, {**clap_cfg.to_dict(), "model_overrides": {}})
        train(bad, tmp_path / "clap-bad")


def test_cli_command(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from openclap.cli import build_parser

    parser = build_parser()  # the CLI's own registration, not a parser of the test's
    recipe = tmp_path / "r.yaml"
    import yaml

    recipe.write_text(yaml.safe_dump(_recipe(shared_data, max_steps=1, save_every=1)))
    args = parser.parse_args(
        [
            "pretrain-audio",
            str(recipe),
            "--run-dir",
            str(tmp_path / "run"),
            "--max-steps",
            "1",
            "--set",
            "sampling.batches=homogeneous",
        ]
    )
    assert args.func(args) == 0
    assert (tmp_path / "run" / "final" / TOWER_WEIGHTS).is_file()
    saved = load_pretrain_config(tmp_path / "run" / "config.yaml")
    assert saved.sampling.batches == "homogeneous" and saved.max_steps == 1
    assert model_config_of(saved).audio.duration == 1.0
    bad = parser.parse_args(
        ["pretrain-audio", str(recipe), "--run-dir", str(tmp_path / "bad"), "--set", "sampling.policy=greedy"]
    )
    assert bad.func(bad) == 2
    assert "sampling.policy" in capsys.readouterr().err
