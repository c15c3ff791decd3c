"""Multi-task audio pretraining: task parsing, targets, sampling proportions, heads and losses (fast, no training)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from openclap_train.config import ManifestSpec, TrainConfigError
from openclap_train.multitask.config import HeadConfig, TaskSpec, load_pretrain_config
from openclap_train.multitask.evaluate import task_metrics
from openclap_train.multitask.model import MultiTaskAudioModel, TaskHead, multitask_loss, task_loss
from openclap_train.multitask.sampling import MultiTaskBatchSampler, task_probabilities
from openclap_train.multitask.tasks import holdout_fraction, load_task, parse_multi_label


def _write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


# ------------------------------------------------------------------------------------------ config
def test_config_parses_tasks_and_rejects_mistakes(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "model: tiny\n"
        "tasks:\n"
        "  - {name: digit, manifest: a.csv, target: digit}\n"
        "  - {name: tags, manifest: {path: b.csv, split: train}, target: [register, dynamics], type: multi_label}\n"
        "sampling: {policy: uniform, batches: homogeneous}\n"
    )
    cfg = load_pretrain_config(recipe)
    assert [t.name for t in cfg.tasks] == ["digit", "tags"]
    assert cfg.tasks[0].target == ["digit"] and cfg.tasks[0].type == "single_label"
    assert cfg.tasks[1].manifest == ManifestSpec(path="b.csv", split="train")
    assert cfg.sampling.policy == "uniform" and cfg.sampling.batches == "homogeneous"
    assert cfg.optim.weight_decay == 0.01 and cfg.optim.lr == 1e-3  # pretraining's own optimiser defaults

    with pytest.raises(TrainConfigError, match="unknown key"):
        load_pretrain_config(recipe, ["sampling.temprature=0.3"])
    with pytest.raises(TrainConfigError, match="need type multi_label"):
        TaskSpec(name="x", manifest=ManifestSpec("a.csv"), target=["a", "b"], type="single_label")
    with pytest.raises(TrainConfigError, match="type must be one of"):
        TaskSpec(name="x", manifest=ManifestSpec("a.csv"), target=["a"], type="ranking")  # type: ignore[arg-type]
    with pytest.raises(TrainConfigError, match="unique"):
        load_pretrain_config(None, None, {"tasks": [{"name": "d", "manifest": "a.csv", "target": "x"}] * 2})
    with pytest.raises(TrainConfigError, match="temperature"):
        load_pretrain_config(None, ["sampling.temperature=2.0"])


# ------------------------------------------------------------------------------------- targets
def test_parse_multi_label_cell() -> None:
    assert parse_multi_label("dog; bark;;dog ;  ") == ["dog", "bark"]
    assert parse_multi_label("speech|music", "|") == ["speech", "music"]
    assert parse_multi_label("") == [] and parse_multi_label(None) == []


def test_multi_label_column_parsed_into_multi_hot(tmp_path: Path) -> None:
    rows = [
        {"path": "a.flac", "split": "train", "tags": "dog;bark"},
        {"path": "b.flac", "split": "train", "tags": " rain "},
        {"path": "c.flac", "split": "train", "tags": ""},  # empty target: left out
        {"path": "d.flac", "split": "train", "tags": "bark; rain; bark"},
        {"path": "e.flac", "split": "test", "tags": "dog;thunder"},  # unseen class in validation: dropped
    ]
    manifest = _write_csv(tmp_path / "m.csv", rows)
    spec = TaskSpec(
        name="tags",
        manifest=ManifestSpec(str(manifest), split="train"),
        target=["tags"],
        type="multi_label",
        val_manifest=ManifestSpec(str(manifest), split="test"),
    )
    task = load_task(spec)
    assert task.classes == ["bark", "dog", "rain"]
    assert [Path(p).name for p in task.paths] == ["a.flac", "b.flac", "d.flac"]
    assert Path(task.paths[0]).parent == tmp_path  # relative to the manifest's folder
    assert task.targets.tolist() == [[1, 1, 0], [0, 0, 1], [1, 0, 1]]
    assert task.val_targets is not None and task.val_targets.tolist() == [[0, 1, 0]]
    assert task.num_outputs == 3


def test_targets_from_shared_manifests(shared_data: Path) -> None:
    inst = str(shared_data / "instruments" / "manifest.csv")
    with open(inst, newline="") as f:
        train = [r for r in csv.DictReader(f) if r["split"] == "train"]

    # multi-label pooled from two columns; rows with an empty register keep their dynamics tag
    tags = load_task(
        TaskSpec(
            name="rd",
            manifest=ManifestSpec(inst, split="train"),
            target=["register", "dynamics"],
            type="multi_label",
        )
    )
    assert tags.classes == ["high", "loud", "low", "middle", "soft"]
    assert len(tags) == len(train)
    for i in (0, 7, len(train) - 1):
        expected = {train[i]["register"], train[i]["dynamics"]} - {""}
        assert {c for c, v in zip(tags.classes, tags.targets[i].tolist()) if v} == expected
    assert tags.targets.sum(1).min() >= 1

    # single label: classes sorted, indices match the column
    fam = load_task(TaskSpec(name="fam", manifest=ManifestSpec(inst, split="train"), target=["family"]))
    assert fam.classes == sorted({r["family"] for r in train})
    assert [fam.classes[i] for i in fam.targets[:20].tolist()] == [r["family"] for r in train[:20]]

    # regression: standardised with the training mean/std, recorded for decoding
    pitch = load_task(
        TaskSpec(
            name="pitch", manifest=ManifestSpec(inst, split="train"), target=["midi_pitch"], type="regression"
        )
    )
    values = torch.tensor([float(r["midi_pitch"]) for r in train], dtype=torch.float64)
    assert pitch.offset == pytest.approx(float(values.mean()))
    assert pitch.scale == pytest.approx(float(values.std(unbiased=False)))
    assert float(pitch.targets.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(pitch.targets.std(unbiased=False)) == pytest.approx(1.0, abs=1e-5)
    fixed = load_task(
        TaskSpec(
            name="p2",
            manifest=ManifestSpec(inst, split="train"),
            target=["midi_pitch"],
            type="regression",
            offset=60.0,
            scale=12.0,
        )
    )
    assert fixed.targets[0].item() == pytest.approx((float(train[0]["midi_pitch"]) - 60) / 12)

    # holdout: the same clips are held out for every task of a manifest, about the asked fraction
    spk = load_task(
        TaskSpec(
            name="spk",
            manifest=ManifestSpec(str(shared_data / "fsdd" / "manifest.csv"), split="train"),
            target=["speaker"],
            holdout=0.2,
        )
    )
    dig = load_task(
        TaskSpec(
            name="dig",
            manifest=ManifestSpec(str(shared_data / "fsdd" / "manifest.csv"), split="train"),
            target=["digit"],
            holdout=0.2,
        )
    )
    assert spk.val_paths == dig.val_paths and not set(spk.val_paths) & set(spk.paths)
    assert 0.15 < len(spk.val_paths) / (len(spk.paths) + len(spk.val_paths)) < 0.25  # 21 of 120 train clips
    assert all(holdout_fraction(p) < 0.2 for p in spk.val_paths)
    assert all(holdout_fraction(p) >= 0.2 for p in spk.paths)

    with pytest.raises(TrainConfigError, match="no column 'pitch'"):
        load_task(TaskSpec(name="bad", manifest=ManifestSpec(inst, split="train"), target=["pitch"]))
    with pytest.raises(TrainConfigError, match="not a number"):
        load_task(
            TaskSpec(
                name="bad", manifest=ManifestSpec(inst, split="train"), target=["note"], type="regression"
            )
        )


# ------------------------------------------------------------------------------------- sampling
def test_task_probabilities_policies() -> None:
    sizes = [1600, 400, 100]
    prop = task_probabilities(sizes, "proportional")
    assert prop.tolist() == pytest.approx([16 / 21, 4 / 21, 1 / 21])
    assert task_probabilities(sizes, "uniform").tolist() == pytest.approx([1 / 3] * 3)
    half = task_probabilities(sizes, "temperature", 0.5)  # sqrt: 40, 20, 10
    assert half.tolist() == pytest.approx([40 / 70, 20 / 70, 10 / 70])
    assert task_probabilities(sizes, "temperature", 1.0).tolist() == pytest.approx(prop.tolist())
    assert task_probabilities(sizes, "temperature", 0.0).tolist() == pytest.approx([1 / 3] * 3)
    with pytest.raises(ValueError, match="positive"):
        task_probabilities([10, 0], "uniform")


@pytest.mark.parametrize("mode", ["mixed", "homogeneous"])
def test_sampling_proportions_match_policy(mode: str) -> None:
    """Seeded statistical check: observed task shares within 4 standard errors of n_i^T / sum n_j^T."""
    sizes = [1600, 400, 100, 25]
    probs = task_probabilities(sizes, "temperature", 0.5)
    steps, batch = (300, 64) if mode == "mixed" else (4000, 8)
    sampler = MultiTaskBatchSampler(sizes, probs, batch, seed=123, mode=mode)
    it = sampler.global_batches()
    counts = torch.zeros(len(sizes))
    draws = 0  # independent draws: rows (mixed) or batches (homogeneous)
    for _ in range(steps):
        tasks = [t for t, _, _ in next(it)]
        if mode == "homogeneous":
            assert len(set(tasks)) == 1  # task-homogeneous batches
            counts[tasks[0]] += 1
            draws += 1
        else:
            counts += torch.bincount(torch.tensor(tasks), minlength=len(sizes)).float()
            draws += len(tasks)
    observed = counts / draws
    se = (probs * (1 - probs) / draws).sqrt()
    assert ((observed.double() - probs).abs() < 4 * se).all(), (observed.tolist(), probs.tolist())
    chi2 = float(((counts.double() - draws * probs) ** 2 / (draws * probs)).sum())
    assert chi2 < 16.3  # chi-square, 3 degrees of freedom, p = 0.001


def test_sampler_epochs_ranks_and_resume() -> None:
    sizes = [7, 5]
    probs = task_probabilities(sizes, "uniform")
    one = MultiTaskBatchSampler(sizes, probs, 4, seed=3)
    it = one.global_batches()
    batches = [next(it) for _ in range(30)]
    # within a task, every row is drawn once per epoch of that task
    for t, n in enumerate(sizes):
        seq = [(i, e) for b in batches for (tt, i, e) in b if tt == t]
        for epoch in range(len(seq) // n):
            chunk = seq[epoch * n : (epoch + 1) * n]
            assert sorted(i for i, _ in chunk) == list(range(n)) and {e for _, e in chunk} == {epoch}
    # two ranks x two accumulation steps see exactly the single-process batch, in order
    iters = [
        iter(MultiTaskBatchSampler(sizes, probs, 4, seed=3, rank=r, world_size=2, grad_accum=2))
        for r in (0, 1)
    ]
    for b in batches[:10]:
        got = []
        for _ in range(2):  # accumulation steps
            got += next(iters[0]) + next(iters[1])
        assert got == b
    # resuming at step 17 continues the uninterrupted sequence (cursors replayed)
    resumed = MultiTaskBatchSampler(sizes, probs, 4, seed=3, start_step=17).global_batches()
    assert [next(resumed) for _ in range(13)] == batches[17:]


# --------------------------------------------------------------------------------- heads, losses
def test_heads_and_losses_per_task_type() -> None:
    torch.manual_seed(0)
    logits = torch.randn(5, 4)
    labels = torch.tensor([0, 3, 1, 1, 2])
    expected_ce = -torch.log_softmax(logits, 1)[torch.arange(5), labels]
    assert torch.allclose(task_loss("single_label", logits, labels), expected_ce, atol=1e-6)

    multi = (torch.rand(5, 4) > 0.5).float()
    p = torch.sigmoid(logits)
    expected_bce = -(multi * p.log() + (1 - multi) * (1 - p).log()).mean(1)
    assert torch.allclose(task_loss("multi_label", logits, multi), expected_bce, atol=1e-5)

    pred, y = torch.randn(5, 1), torch.randn(5)
    assert torch.allclose(task_loss("regression", pred, y), (pred[:, 0] - y) ** 2)
    with pytest.raises(ValueError, match="unknown task type"):
        task_loss("ranking", logits, labels)

    head = TaskHead(8, 3, HeadConfig())
    assert isinstance(head.net, torch.nn.Linear) and head(torch.randn(2, 8)).shape == (2, 3)
    mlp = TaskHead(8, 1, HeadConfig(hidden=16, dropout=0.1))
    assert mlp(torch.randn(2, 8)).shape == (2, 1) and len(mlp.net) == 4


def test_multitask_loss_weights_rows_and_reaches_every_head() -> None:
    from openclap.factory import resolve_config

    audio = resolve_config("tiny").audio
    model = MultiTaskAudioModel(audio, {"cls": 3, "tags": 2, "reg": 1, "absent": 4}, HeadConfig())
    wave = torch.randn(4, audio.num_samples) * 0.1
    out = model(wave)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "cls": (4, 3),
        "tags": (4, 2),
        "reg": (4, 1),
        "absent": (4, 4),
    }
    task_ids = torch.tensor([0, 1, 0, 2])
    targets = [
        torch.tensor([2, 0]),
        torch.tensor([[1.0, 0.0]]),
        torch.tensor([0.5]),
        torch.zeros(0, dtype=torch.long),
    ]
    kinds = ["single_label", "multi_label", "regression", "single_label"]
    weights = [1.0, 2.0, 0.5, 1.0]
    loss, parts = multitask_loss(out, task_ids, targets, kinds, ["cls", "tags", "reg", "absent"], weights)
    ce = F.cross_entropy(out["cls"][[0, 2]], targets[0], reduction="sum")
    bce = F.binary_cross_entropy_with_logits(out["tags"][[1]], targets[1], reduction="none").mean(1).sum()
    mse = (out["reg"][3, 0] - 0.5) ** 2
    assert loss.item() == pytest.approx(((ce + 2 * bce + 0.5 * mse) / 4).item(), rel=1e-5)
    assert parts["cls"][1] == 2 and parts["tags"][1] == 1 and "absent" not in parts
    loss.backward()
    assert model.heads["absent"].net.weight.grad is not None  # zero, but present: DDP sees every parameter
    assert float(model.heads["absent"].net.weight.grad.abs().sum()) == 0.0
    assert float(model.heads["cls"].net.weight.grad.abs().sum()) > 0
    tower = model.tower_state_dict()
    assert tower and all(k.startswith(("audio_frontend.", "audio_encoder.")) for k in tower)


def test_task_metrics() -> None:
    from types import SimpleNamespace

    single = SimpleNamespace(kind="single_label", scale=1.0)
    m = task_metrics(single, torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]]), torch.tensor([0, 1, 1]))
    assert m["acc"] == pytest.approx(2 / 3) and m["loss"] > 0
    multi = SimpleNamespace(kind="multi_label", scale=1.0)
    m = task_metrics(
        multi,
        torch.tensor([[0.9, 0.1], [0.8, 0.7], [0.1, 0.9]]),
        torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]),
    )
    assert m["mAP"] == pytest.approx(1.0)
    reg = SimpleNamespace(kind="regression", scale=12.0)
    m = task_metrics(reg, torch.tensor([[0.0], [1.0], [2.5]]), torch.tensor([0.0, 1.0, 2.0]))
    assert m["mae"] == pytest.approx(12.0 * 0.5 / 3)
    assert m["r2"] == pytest.approx(1 - 0.25 / 2.0)
    assert math.isfinite(m["loss"])


def test_task_manifest_from_an_evaluation_adapter(shared_data: Path, tmp_path: Path) -> None:
    """ESC-50's published layout (meta/esc50.csv + audio/) -> task manifest -> a single-label task."""
    from openclap_train.multitask.adapters import adapter_manifest

    root = tmp_path / "ESC-50-master"
    (root / "meta").mkdir(parents=True)
    (root / "audio").symlink_to(shared_data / "esc10" / "audio")
    with open(shared_data / "esc10" / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    targets = {c: i for i, c in enumerate(sorted({r["label"] for r in rows}))}
    _write_csv(
        root / "meta" / "esc50.csv",
        [
            {
                "filename": Path(r["path"]).name,
                "fold": r["fold"],
                "target": str(targets[r["label"]]),
                "category": r["label"],
                "esc10": "True",
                "src_file": r["freesound_id"],
                "take": "A",
            }
            for r in rows
        ],
    )
    out = tmp_path / "esc50.csv"
    assert adapter_manifest("esc50", root, out) == len(rows)
    task = load_task(
        TaskSpec(name="esc", manifest=ManifestSpec(str(out), exclude={"fold": ["4"]}), target=["label"])
    )
    assert len(task) == sum(r["fold"] != "4" for r in rows) and task.classes == sorted(targets)
    assert all(Path(p).is_file() for p in task.paths[:5])
