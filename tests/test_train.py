"""Trainer: config parsing, data order and determinism, a tiny end-to-end run, fine-tuning with a frozen tower."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

import openclap
from openclap.factory import create_model, get_model_config
from openclap.pipeline import ClapPipeline
from openclap.text.tokenizer import TextTokenizer
from openclap_train import checkpoint as ckpt
from openclap_train.config import AugmentConfig, ManifestSpec, OptimConfig, TrainConfigError, load_config
from openclap_train.data import EpochBatchSampler, ManifestDataset, augment_wave, read_manifest
from openclap_train.engine import param_groups
from openclap_train.evaluate import retrieval_recall
from openclap_train.schedule import LrSchedule
from openclap_train.train import main


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def tiny_recipe(shared_data: Path, **extra) -> dict:
    """A tiny from-scratch recipe on 16 real FSDD clips (no dropout, frozen BN: deterministic and cheap)."""
    recipe = {
        "model": "tiny",
        "model_overrides": {
            "projection_dropout": 0.0,
            "audio": {"duration": 1.0, "htsat": {"drop_path_rate": 0.0}},
            "text": {"transformer": {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}},
        },
        "tokenizer": "train",
        "tokenizer_vocab_size": 320,
        "train_manifest": [
            {"path": str(shared_data / "fsdd/manifest.csv"), "split": "train", "max_items": 16}
        ],
        "batch_size": 8,
        "max_steps": 4,
        "log_every": 1,
        "save_every": 2,
        "optim": {"lr": 1e-3},
        "batchnorm": "frozen",
    }
    recipe.update(extra)
    return recipe


# ------------------------------------------------------------------------------------------ config
def test_config_unknown_keys_types_and_overrides(tmp_path):
    path = write_yaml(tmp_path / "c.yaml", {"model": "tiny", "train_manifest": "a.csv", "max_steps": 3})
    cfg = load_config(
        path, ["optim.lr=3e-4", "augment.gain_db=6", "train_manifest=[b.csv, {path: c.csv, split: test}]"]
    )
    assert cfg.optim.lr == 3e-4 and cfg.augment.gain_db == 6.0 and cfg.max_steps == 3
    assert [m.path for m in cfg.train_manifest] == ["b.csv", "c.csv"] and cfg.train_manifest[
        1
    ].split == "test"
    assert load_config(path).train_manifest == [
        ManifestSpec(path="a.csv")
    ]  # a single path is a one-item list
    with pytest.raises(TrainConfigError, match=r"unknown key\(s\) \['lrr'\]"):
        load_config(path, ["lrr=1"])
    with pytest.raises(TrainConfigError, match="augment: unknown key"):
        load_config(path, ["augment.gian_db=1"])
    with pytest.raises(TrainConfigError, match="must be one of"):
        load_config(path, ["optim.schedule=linear"])
    with pytest.raises(TrainConfigError, match=r"\['lr'\] belong under `optim:`"):
        load_config(path, ["lr=1e-3"])  # the flat keys of recipes before the one engine
    with pytest.raises(TrainConfigError, match="must be an integer"):
        load_config(path, ["batch_size=8.5"])
    with pytest.raises(TrainConfigError, match="key=value"):
        load_config(path, ["lr"])
    with pytest.raises(FileNotFoundError, match="training config"):
        load_config(tmp_path / "missing.yaml")
    # the resolved config round-trips
    again = load_config(write_yaml(tmp_path / "r.yaml", cfg.to_dict()))
    assert again == cfg


def test_shipped_recipes_parse():
    configs = Path(__file__).resolve().parents[1] / "configs"
    for name in ("small-shared-data.yaml", "finetune-freeze-text.yaml", "openclap-mini.yaml"):
        load_config(configs / name).require_data()
    # openclap-mini's recipe reads data that scripts generate (not committed): it parses, with its augmentation
    mini = load_config(configs / "openclap-mini.yaml")
    assert mini.augment.enabled and [s.display_name for s in mini.val_manifest][-2:] == [
        "synthetic-voice-val",
        "timbre-val",
    ]


def test_schedule_and_param_groups():
    cfg = OptimConfig(lr=1.0, warmup_steps=2, schedule="cosine", min_lr_ratio=0.1)
    s = LrSchedule(cfg, total_steps=12)
    assert [s.lr_at(i) for i in range(2)] == [0.5, 1.0]
    assert (
        s.lr_at(2) == pytest.approx(1.0)
        and s.lr_at(12) == pytest.approx(0.1)
        and s.lr_at(7) == pytest.approx(0.55)
    )
    p = LrSchedule(OptimConfig(lr=1.0, schedule="plateau", plateau_patience=1, plateau_factor=0.5), 10)
    for v in [3.0, 2.0, 2.0, 2.0]:
        p.observe(v)
    assert p.lr_at(5) == 0.5  # two evaluations without improvement > patience 1
    model = create_model(get_model_config("tiny"))
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    assert "logit_scale" in no_decay_names
    assert all(n.endswith(("bias", "weight")) for n in no_decay_names if n != "logit_scale")
    assert not any("norm" in names[id(p)] or names[id(p)].endswith(".bias") for p in decay["params"])
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0


# -------------------------------------------------------------------------------------------- data
def test_sampler_splits_global_batches_by_rank_and_resumes():
    one = EpochBatchSampler(20, 8, seed=3)
    it = iter(one)
    batches = [next(it) for _ in range(5)]  # 2 steps per epoch: epoch 0, 0, 1, 1, 2
    assert [b[0][0] for b in batches] == [0, 0, 1, 1, 2]
    assert len({i for _, i in batches[0] + batches[1]}) == 16  # no item twice in an epoch
    two = [EpochBatchSampler(20, 8, seed=3, rank=r, world_size=2) for r in range(2)]
    its = [iter(s) for s in two]
    for b in batches:
        assert next(its[0]) + next(its[1]) == b  # rank parts in rank order = the one-process batch
    acc = iter(EpochBatchSampler(20, 8, seed=3, grad_accum=2))
    assert next(acc) + next(acc) == batches[0]
    resumed = iter(EpochBatchSampler(20, 8, seed=3, start_step=3))
    assert next(resumed) == batches[3]
    with pytest.raises(ValueError, match="divisible"):
        EpochBatchSampler(20, 6, seed=0, world_size=4)


def test_dataset_crops_are_per_sample_deterministic_and_bad_files_skipped(tmp_path, shared_data, caplog):
    esc = shared_data / "esc10"
    rows = [r for r in (esc / "manifest.csv").read_text().splitlines()[1:4]]
    (tmp_path / "broken.flac").write_bytes(b"not audio at all")
    shutil.copy(esc / rows[0].split(",")[0], tmp_path / "good.flac")
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,caption,label\nbroken.flac,a broken file,x\ngood.flac,a dog barks,dog\n")
    samples = read_manifest(str(manifest))
    assert samples[1].path == str(tmp_path / "good.flac")  # relative to the manifest's folder
    audio = get_model_config("tiny").audio
    ds = ManifestDataset(samples, audio, seed=5, augment=AugmentConfig(gain_db=6, time_shift=0.1))
    a, b = (
        ds[(0, 1)],
        ManifestDataset(samples, audio, seed=5, augment=AugmentConfig(gain_db=6, time_shift=0.1))[(0, 1)],
    )
    assert torch.equal(a["waveform"], b["waveform"]) and a["waveform"].shape == (audio.num_samples,)
    assert not torch.equal(a["waveform"], ds[(1, 1)]["waveform"])  # another epoch, another crop
    with caplog.at_level("WARNING"):
        first = ds[(0, 0)]
        ds[(1, 0)]
    assert (
        first["index"] == 1 and first["caption"] == "a dog barks"
    )  # the bad item is replaced by the next one
    assert sum("broken.flac" in r.getMessage() for r in caplog.records) == 1  # logged once
    mixed = ManifestDataset(samples, audio, seed=5, augment=AugmentConfig(mix_prob=1.0))[(0, 1)]
    assert mixed["caption"] == "a dog barks and a dog barks"
    g = torch.Generator().manual_seed(0)
    w = torch.ones(100)
    assert torch.equal(augment_wave(w, AugmentConfig(), g), w)


def test_caption_pool_extra_captions_repeat_and_groups(shared_data):
    esc = shared_data / "esc10/manifest.csv"
    spec = ManifestSpec(
        path=str(esc),
        split="train",
        include={"fold": ["1"]},
        caption_pool="label",
        extra_captions=["<{label}>", "<{label}, fold {fold}>"],
        extra_caption_prob=0.25,
        repeat=2,
    )
    samples = read_manifest(spec)
    plain = read_manifest(ManifestSpec(path=str(esc), split="train", include={"fold": ["1"]}))
    assert len(samples) == 2 * len(plain) == 22 and samples[11].path == samples[0].path  # repeat
    waves = next(s for s in samples if "sea_waves" in s.path)
    assert waves.extras == ("<sea waves>", "<sea waves, fold 1>")  # filled as prompts write class names
    audio = get_model_config("tiny").audio
    ds = ManifestDataset(samples, audio, seed=0)
    # label groups: one id per (manifest, label), equal for the repeated copy
    assert len(set(ds.groups)) == 10 and ds.groups[0] == ds.groups[11]
    assert ds.groups == [
        ds.groups[samples.index(next(t for t in samples if t.label == s.label))] for s in samples
    ]
    i = samples.index(waves)
    pool = {s.caption for s in plain if s.label == "sea_waves"}
    drawn = [ds[(epoch, i)]["caption"] for epoch in range(60)]
    assert drawn == [ds[(epoch, i)]["caption"] for epoch in range(60)]  # per-sample generator: reproducible
    extra = [c for c in drawn if c in waves.extras]
    assert len(pool) == 2 and set(drawn) <= pool | set(waves.extras)
    assert set(drawn) & pool == pool  # the other sea_waves clip's caption is drawn too
    assert 5 <= len(extra) <= 25  # extra_caption_prob 0.25 of 60 draws (15 expected)
    assert ds[(0, i)]["group"] == ds.groups[i]
    # defaults: the row's own caption, no extra draws (so default runs are unchanged)
    base = ManifestDataset(plain, audio, seed=0)
    j = [s.path for s in plain].index(waves.path)
    assert {base[(e, j)]["caption"] for e in range(3)} == {plain[j].caption}
    with pytest.raises(ValueError, match="cannot be filled"):
        read_manifest(ManifestSpec(path=str(esc), extra_captions=["{colour}"], extra_caption_prob=0.5))
    with pytest.raises(ValueError, match="caption_pool column 'colour'"):
        read_manifest(ManifestSpec(path=str(esc), caption_pool="colour"))
    with pytest.raises(TrainConfigError, match="needs extra_captions"):
        ManifestSpec(path=str(esc), extra_caption_prob=0.5)


# ------------------------------------------------------------------------------------ end to end
class FakeClock:
    """``time.perf_counter`` for the engine (``monkeypatch.setattr(engine, "time", clock)``): it moves only
    when a test says so, so the engine's timing arithmetic is checked exactly on a loaded machine."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


def test_optimizer_step_mean_loss_gradient_and_data_wait(monkeypatch) -> None:
    """Two micro-batches: the step loss and gradient are their means, and the data wait counts the time spent
    in ``next(batches)`` (1 + 2 s) but not the forward passes (10 s each)."""
    from openclap_train import engine

    clock = FakeClock()
    monkeypatch.setattr(engine, "time", clock)
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(2.0)
    micro = [
        (1.0, 1.0, 1.0),
        (2.0, 0.0, 2.0),
    ]  # (x, y, seconds to fetch): losses (2-1)^2 = 1 and (4-0)^2 = 16

    def batches():
        for x, y, seconds in micro:
            clock.now += seconds
            yield {"x": torch.tensor([[x]]), "y": torch.tensor([[y]])}

    def loss_of(batch: dict) -> torch.Tensor:
        clock.now += 10.0
        return ((model(batch["x"]) - batch["y"]) ** 2).mean()

    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    loss, wait = engine.optimizer_step(model, optimizer, scaler, batches(), loss_of, 2, None, False)
    assert loss == pytest.approx(8.5)  # (1 + 16) / 2
    # d/dw: 2 (w x - y) x = 2 and 16; mean 9 -> w = 2 - 0.1 * 9
    assert model.weight.item() == pytest.approx(1.1)
    assert wait == 3.0


def test_run_logs_data_wait_as_the_share_of_time_spent_waiting_for_batches(tmp_path, monkeypatch) -> None:
    """Through the engine's loop: 2 steps x 2 micro-batches in one log window, each micro-batch 1 s in
    ``next(batches)`` and 3 s in the forward pass, so the logged ``data_wait`` is 4 s / 16 s = 0.25
    (counting only the last micro-batch of a step, or only the last step of the window, gives 0.125)."""
    from openclap_train import engine
    from openclap_train.config import LoopConfig

    clock = FakeClock()
    monkeypatch.setattr(engine, "time", clock)

    class SlowTask(engine.Task):
        def __init__(self) -> None:
            self.config = LoopConfig(batch_size=2, grad_accum=2, max_steps=2, log_every=2, device="cpu")

        def build(self, run_dir, info) -> None:
            torch.manual_seed(0)
            self.model = torch.nn.Linear(1, 1)

        def batches(self, start_step, info, device):
            while True:
                clock.now += 1.0
                yield {"x": torch.ones(1, 1)}

        def training_forward(self, batch, device):
            clock.now += 3.0
            return {"loss": self.train_module(batch["x"]).square().mean()}

        def export(self, final_dir, last):
            return final_dir, {}

    result = engine.run(SlowTask(), tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in records if "data_wait" in r]
    assert [r["step"] for r in logged] == [2] and logged[0] == result.last_metrics
    assert logged[0]["data_wait"] == 0.25
    assert logged[0]["samples_per_s"] == 2 * 2 / 16.0  # 2 steps of batch 2 in 16 s


def test_retrieval_recall_counts_every_clip_of_a_shared_caption() -> None:
    """Two clips share "dog": the "dog" query hits at rank 1 through the *second* dog clip."""
    audio = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])  # dog, dog, cat
    text = torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])  # one row per clip's caption
    # dog query [0, 1]: clips 1 (dog), 2, 0 -> hit at 1; cat query [1, 0]: clips 0 (dog), 2 (cat) -> hit at 2
    got = retrieval_recall(audio, text, ["dog", "dog", "cat"], ks=(1, 2))
    assert got == {"t2a_R@1": 0.5, "t2a_R@2": 1.0}


def _assert_val_metrics_recomputed(pipe: ClapPipeline, val: dict, logged: dict) -> None:
    """The logged ``val/<name>/*`` numbers equal ones recomputed from the exported model: text-to-audio R@k
    where clips share captions (a caption's query hits when any clip with that caption is in its top k) and
    zero-shot accuracy with the run's default prompt."""
    spec = ManifestSpec(**{k: v for k, v in val.items() if k != "name"})
    rows = read_manifest(spec)
    captions = [r.caption for r in rows]
    assert len(rows) >= 8 and len(set(captions)) < len(rows)  # shared captions: the case under test
    audio = np.asarray(pipe.embed_audio([r.path for r in rows]))
    unique = sorted(set(captions))
    sims = np.asarray(pipe.embed_text(unique)) @ audio.T  # (captions, clips)
    for k in (1, 5):
        hits = [
            any(captions[j] == c for j in np.argsort(-sims[q], kind="stable")[:k])
            for q, c in enumerate(unique)
        ]
        assert logged[f"val/{val['name']}/t2a_R@{k}"] == pytest.approx(np.mean(hits), abs=1e-6), k
    labels = sorted({r.label for r in rows})
    prompts = np.asarray(pipe.embed_text([f"this is the sound of {lab}" for lab in labels]))
    pred = (audio @ prompts.T).argmax(1)
    acc = np.mean([labels[p] == r.label for p, r in zip(pred, rows)])
    assert logged[f"val/{val['name']}/zeroshot_acc"] == pytest.approx(acc, abs=1e-6)


def test_tiny_run_writes_run_dir_and_loadable_model(tmp_path, shared_data):
    val = {
        "path": str(shared_data / "fsdd/manifest.csv"),
        "split": "test",
        "include": {"take": ["0"]},
        "name": "digits",
    }
    cfg = write_yaml(
        tmp_path / "c.yaml", tiny_recipe(shared_data, val_manifest=[val], eval_every=2, keep_checkpoints=1)
    )
    run = tmp_path / "run"
    assert main([str(cfg), "--run-dir", str(run), "--set", "optim.warmup_steps=1"]) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in records if "loss" in r]
    assert train_steps == [1, 2, 3, 4]
    # warmup 1 step, then cosine over the 3 others to 0: lr * 0.5 * (1 + cos(pi * k / 3)), k = 0, 1, 2
    assert [r["lr"] for r in records if "loss" in r] == pytest.approx([1e-3, 1e-3, 7.5e-4, 2.5e-4])
    assert [r["epoch"] for r in records if "loss" in r] == [
        0,
        0,
        1,
        1,
    ]  # 16 clips, batch 8: 2 steps per epoch
    evals = [r for r in records if "val/digits/zeroshot_acc" in r]
    assert [r["step"] for r in evals] == [2, 4]
    assert [p.name for _, p in ckpt.list_checkpoints(run / "checkpoints")] == ["step_00000004.pt"]  # keep 1
    state = ckpt.load_checkpoint_file(run / "checkpoints/step_00000004.pt")
    assert state["step"] == 4 and state["epoch"] == 2 and state["step_in_epoch"] == 0 and state["version"]
    assert yaml.safe_load((run / "config.yaml").read_text())["optim"]["warmup_steps"] == 1
    pipe = openclap.load(run / "final")
    vocab = pipe.tokenizer.vocab_size  # trained BPE: at most the requested 320 tokens on 16 captions
    assert 257 < vocab <= 320 and pipe.config.text.transformer["vocab_size"] == vocab
    assert (
        json.loads((run / "final/config.json").read_text())["text"]["tokenizer"] == "tokenizer"
    )  # no run path
    emb = pipe.embed_audio([str(shared_data / "fsdd/audio/0_jackson_0.flac")])
    saved = load_file(str(run / "final/model.safetensors"))
    assert torch.equal(saved["logit_scale"], state["model"]["logit_scale"])
    assert emb.shape == (1, 64)
    assert [r for r in records if "loss" in r][-1]["logit_scale"] == pytest.approx(
        float(saved["logit_scale"].exp()), rel=1e-6
    )
    _assert_val_metrics_recomputed(pipe, val, evals[-1])
    # the same run directory again without --resume: refused, nothing overwritten
    assert main([str(cfg), "--run-dir", str(run)]) == 2


def test_finetune_with_frozen_text_tower(tmp_path, shared_data):
    # a "converted checkpoint" stand-in: a tiny model directory with random weights and the GPT-2 tokenizer
    base = create_model(get_model_config("tiny"), seed=1)
    init_dir = ClapPipeline(base, TextTokenizer(base.config.text)).save_pretrained(tmp_path / "init")
    recipe = tiny_recipe(shared_data, init=str(init_dir), freeze_text=True, max_steps=2)
    del recipe["tokenizer"], recipe["tokenizer_vocab_size"]
    cfg = write_yaml(tmp_path / "ft.yaml", recipe)
    assert main([str(cfg), "--run-dir", str(tmp_path / "run")]) == 0
    before, after = (
        load_file(str(init_dir / "model.safetensors")),
        load_file(str(tmp_path / "run/final/model.safetensors")),
    )
    text_keys = [k for k in before if k.startswith("text_encoder.")]
    assert text_keys and all(torch.equal(before[k], after[k]) for k in text_keys)
    assert not torch.equal(
        before["audio_encoder.patch_embed.proj.weight"], after["audio_encoder.patch_embed.proj.weight"]
    )
    assert not torch.equal(before["text_projection.linear1.weight"], after["text_projection.linear1.weight"])
    pipe = openclap.load(tmp_path / "run/final")
    assert pipe.embed_text(["a dog barks"]).shape == (1, 64)


def test_label_positives_run_is_reproducible_with_the_same_seed(tmp_path, shared_data):
    """The openclap-mini recipe's extras (positives: label, caption pools, extra captions, repeat) on the
    tiny model: the same seed gives bitwise the same losses and weights, another seed does not."""
    spec = {
        "path": str(shared_data / "fsdd/manifest.csv"),
        "split": "train",
        "include": {"take": ["10"]},
        "max_items": 12,
        "repeat": 2,  # 3 digits x 4 speakers, listed twice
        "caption_pool": "label",
        "extra_captions": ["{label}"],
        "extra_caption_prob": 0.3,
    }
    outs = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        cfg = write_yaml(
            tmp_path / f"{name}.yaml",
            tiny_recipe(
                shared_data, train_manifest=[spec], max_steps=3, positives="label", seed=seed, save_every=3
            ),
        )
        assert main([str(cfg), "--run-dir", str(tmp_path / name)]) == 0
        losses = [json.loads(x)["loss"] for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        outs.append((losses, load_file(str(tmp_path / name / "final/model.safetensors"))))
    (la, wa), (lb, wb), (lc, wc) = outs
    assert len(la) == 3 and la == lb and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert la != lc and not all(torch.equal(wa[k], wc[k]) for k in wa)
    assert all(math.isfinite(x) and x > 0 for x in la)


def test_bad_config_exits_with_usage_code(tmp_path, capsys):
    cfg = write_yaml(tmp_path / "c.yaml", {"model": "tiny", "train_manifest": "x.csv", "max_step": 3})
    assert main([str(cfg), "--run-dir", str(tmp_path / "run")]) == 2
    assert "unknown key(s) ['max_step']" in capsys.readouterr().err


def test_cli_modules_train_and_tokenizer(tmp_path, shared_data, capsys):
    from openclap.cli import build_parser

    parser = build_parser()  # the CLI's own registration, not a parser of the test's
    args = parser.parse_args(
        [
            "tokenizer",
            "train",
            str(shared_data / "esc10/manifest.csv"),
            "--split",
            "train",
            "--out",
            str(tmp_path / "tok"),
            "--vocab-size",
            "300",
        ]
    )
    assert args.func(args) == 0
    assert "trained a byte-level BPE of 300 tokens on 21 captions" in capsys.readouterr().out
    cfg = get_model_config("tiny").text
    tok = TextTokenizer(cfg, tmp_path / "tok")
    ids = tok(["a dog barks"])["input_ids"][0].tolist()
    assert ids[-1] == tok.token_to_id("<|endoftext|>") and max(ids) < 300
    bad = write_yaml(tmp_path / "bad.yaml", {"model": "tiny", "train_manifest": "x.csv", "batch_sise": 4})
    args = parser.parse_args(["train", str(bad), "--run-dir", str(tmp_path / "run")])
    assert args.func(args) == 2 and "batch_sise" in capsys.readouterr().err


def test_init_audio_loads_only_the_audio_tower(tmp_path):
    from openclap.factory import CheckpointError, save_model_dir
    from openclap_train.audio_tower import load_audio_tower

    src = create_model(get_model_config("tiny"), seed=7)
    save_model_dir(src, tmp_path / "src")
    dst = create_model(get_model_config("tiny"), seed=8)
    text_before = {k: v.clone() for k, v in dst.state_dict().items() if k.startswith("text_")}
    load_audio_tower(dst, tmp_path / "src")
    for k, v in dst.state_dict().items():
        if k.startswith("audio_encoder."):
            assert torch.equal(v, src.state_dict()[k])
        if k.startswith("text_"):
            assert torch.equal(v, text_before[k])
    other = create_model(get_model_config("small"))
    with pytest.raises(CheckpointError, match="does not fit the audio tower"):
        load_audio_tower(other, tmp_path / "src")
