"""Multi-task audio-encoder pretraining (the paper's "HTSAT-22" stage): ``openclap pretrain-audio``.

One process::

    openclap pretrain-audio configs/pretrain-audio/shared-data-7tasks.yaml --run-dir runs/pt

Several processes (gloo on CPU, NCCL on GPUs)::

    torchrun --nproc_per_node 2 -m openclap_train.multitask configs/pretrain-audio/shared-data-7tasks.yaml --run-dir runs/pt

Resume: the same command plus ``--resume latest`` (bitwise identical on CPU in fp32 with the same number
of processes). The run directory is laid out as ``openclap train``'s (the same checkpoint, metrics and
distributed machinery from ``openclap_train`` is used): ``config.yaml``, ``model_config.json``,
``metrics.jsonl`` (train loss per task, ``val/<task>/<metric>``), ``checkpoints/`` (tower + heads,
optimiser, schedule, RNG, step) and ``final/``, an audio-tower directory (heads dropped) that
``openclap train`` takes as ``init_audio`` (see ``openclap_train.audio_tower``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import openclap
from openclap.config import ClapConfig
from openclap.factory import resolve_config
from openclap_train import checkpoint as ckpt
from openclap_train.audio_tower import load_audio_tower, save_audio_tower
from openclap_train.config import TrainConfigError
from openclap_train.distributed import (
    DistInfo,
    barrier,
    broadcast_object,
    cleanup,
    init_distributed,
    mean_across,
)
from openclap_train.engine import (
    UNUSED_AUDIO_HEADS,
    LrSchedule,
    build_optimizer,
    optimizer_step,
    set_batchnorm_mode,
    step_seed,
)
from openclap_train.multitask.config import PretrainConfig, load_pretrain_config, save_pretrain_config
from openclap_train.multitask.data import MultiTaskDataset, batch_targets, multitask_loader
from openclap_train.multitask.evaluate import ValAudio, evaluate_tasks
from openclap_train.multitask.model import MultiTaskAudioModel, multitask_loss
from openclap_train.multitask.sampling import MultiTaskBatchSampler, task_probabilities
from openclap_train.multitask.tasks import TaskData, load_tasks
from openclap_train.train import (
    _autocast,
    _deep_merge,
    _device,
    _MetricsWriter,
    _truncate_metrics,
    ensure_progress_logging,
)

logger = logging.getLogger("openclap_train")


@dataclass
class PretrainResult:
    """What a finished run returns (rank 0 has the metrics)."""

    run_dir: Path
    step: int
    final_dir: Path | None
    last_metrics: dict[str, Any] = field(default_factory=dict)


def model_config_of(config: PretrainConfig) -> ClapConfig:
    """The ClapConfig the tower is built from: the preset (or model dir) with ``model_overrides`` applied."""
    return ClapConfig.from_dict(_deep_merge(resolve_config(config.model).to_dict(), config.model_overrides))


def build_model(config: PretrainConfig, tasks: list[TaskData], clap_config: ClapConfig) -> MultiTaskAudioModel:
    """Tower + heads, seeded from ``config.seed``; the tower from ``init_audio`` when given."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = MultiTaskAudioModel(clap_config.audio, {t.name: t.num_outputs for t in tasks}, config.head)
    if config.init_audio:
        load_audio_tower(model, config.init_audio)
        logger.info("audio tower initialised from %s", config.init_audio)
    for name, p in model.audio_encoder.named_parameters():  # classifier heads of the encoder never get a loss
        if name.startswith(UNUSED_AUDIO_HEADS):
            p.requires_grad_(False)
    return model


def pretrain(config: PretrainConfig, run_dir: str | Path, resume: str | None = None) -> PretrainResult:
    """Run (or resume) multi-task pretraining; returns after ``max_steps``."""
    ensure_progress_logging()
    config.require_tasks()
    device_kind = "cuda" if (config.device == "auto" and torch.cuda.is_available()) or config.device.startswith("cuda") else "cpu"
    info = init_distributed(device_kind)
    try:
        return _pretrain(config, Path(run_dir), resume, info)
    finally:
        cleanup(info)


def _pretrain(config: PretrainConfig, run_dir: Path, resume: str | None, info: DistInfo) -> PretrainResult:
    optim_cfg = config.optim_config()
    device = _device(optim_cfg, info)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    barrier(info)

    state: dict[str, Any] | None = None
    resume_path: str | None = None
    if resume and info.is_main:
        resume_path = ckpt.find_resume_checkpoint(resume, run_dir / "checkpoints")
    resume_path = broadcast_object(resume_path, info)
    if resume_path is not None:
        state = ckpt.load_checkpoint_file(resume_path)
        if state.get("config") != config.to_dict() and info.is_main:
            logger.warning("resuming %s with a changed config; the run will not be bitwise reproducible", resume_path)

    tasks = load_tasks(config.tasks)
    clap_config = model_config_of(config)
    model = build_model(config, tasks, clap_config)
    if state is not None:
        model.load_state_dict(state["model"])
    if config.batchnorm == "sync" and info.enabled:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    raw_model: MultiTaskAudioModel = model
    optimizer = build_optimizer(model, optim_cfg)
    schedule = LrSchedule(optim_cfg, config.max_steps)
    scaler = torch.amp.GradScaler("cuda", enabled=config.precision == "fp16" and device.type == "cuda")

    step, window = 0, {"loss": 0.0, "steps": 0}
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        ckpt.set_rng_state(state["rng"])
        step, window = int(state["step"]), dict(state["window"])
        logger.info("resumed from %s at step %d", resume_path, step)
    del state

    sizes = [len(t) for t in tasks]
    probs = task_probabilities(sizes, config.sampling.policy, config.sampling.temperature)
    sampler = MultiTaskBatchSampler(sizes, probs, config.batch_size, config.seed, config.sampling.batches,
                                    info.rank, info.world_size, config.grad_accum, start_step=step)
    dataset = MultiTaskDataset(tasks, clap_config.audio, config.seed, config.augment, config.cache_audio)
    loader = multitask_loader(dataset, sampler, config.num_workers)
    val_audio = ValAudio(clap_config.audio.sample_rate)
    names, kinds = [t.name for t in tasks], [t.kind for t in tasks]
    weights = [t.spec.weight for t in tasks]

    if info.enabled:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False)
    if info.is_main:
        save_pretrain_config(config, run_dir / "config.yaml")
        (run_dir / "model_config.json").write_text(json.dumps(clap_config.to_dict(), indent=2) + "\n")
        (run_dir / "tasks.json").write_text(json.dumps([t.info() for t in tasks], indent=2) + "\n")
        _truncate_metrics(run_dir / "metrics.jsonl", step)
        n_train = sum(p.numel() for p in raw_model.parameters() if p.requires_grad)
        logger.info("pretrain-audio %s: %.2fM trainable parameters; %d tasks (%s); sampling %s -> %s; %d processes; "
                    "%d steps; device %s", clap_config.name, n_train / 1e6, len(tasks), ", ".join(names),
                    config.sampling.policy, [round(float(p), 3) for p in probs], info.world_size, config.max_steps,
                    device)
    writer = _MetricsWriter(run_dir, info.is_main)
    model.train()
    set_batchnorm_mode(model, config.batchnorm)
    last: dict[str, Any] = {}
    data_iter = iter(loader)
    t_log, wait_log, steps_log = time.perf_counter(), 0.0, 0
    task_window: dict[str, list[float]] = {}

    def loss_of(batch: dict[str, Any]) -> torch.Tensor:
        with _autocast(optim_cfg, device):
            outputs = model(batch["waveform"].to(device, non_blocking=True))
        task_ids = batch["task"].to(device)
        loss, parts = multitask_loss(outputs, task_ids, batch_targets(batch, tasks, device), kinds, names, weights)
        for name, (total, rows) in parts.items():  # per-task train loss since the last log line
            acc = task_window.setdefault(name, [0.0, 0])
            acc[0] += total
            acc[1] += rows
        return loss

    while step < config.max_steps:
        torch.manual_seed(step_seed(config.seed, step, info.rank))
        lr = schedule.lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        step_loss, wait = optimizer_step(model, optimizer, scaler, data_iter, loss_of, config.grad_accum,
                                         config.grad_clip, info.enabled)
        wait_log += wait
        step_loss = mean_across(step_loss, info)  # the global-batch loss (ranks hold equal-sized parts)
        step += 1
        steps_log += 1
        window["loss"] += step_loss
        window["steps"] += 1

        if step % config.log_every == 0 or step == config.max_steps:
            elapsed = time.perf_counter() - t_log
            record = {"step": step, "loss": step_loss, "lr": lr,
                      "samples_per_s": steps_log * config.batch_size / max(elapsed, 1e-9),
                      "data_wait": wait_log / max(elapsed, 1e-9)}
            # per-task train loss over the rows this rank saw since the last log line
            record.update({f"train/{n}/loss": s / max(1, k) for n, (s, k) in task_window.items()})
            record.update({f"train/{n}/rows": k for n, (s, k) in task_window.items()})
            task_window = {}
            writer.write(record)
            if info.is_main:
                logger.info("step %d/%d loss %.4f lr %.2e %.1f samples/s data-wait %.0f%%", step, config.max_steps,
                            step_loss, lr, record["samples_per_s"], 100 * record["data_wait"])
            last.update(record)
            t_log, wait_log, steps_log = time.perf_counter(), 0.0, 0

        if (config.eval_every and step % config.eval_every == 0) or step == config.max_steps:
            mean_loss = window["loss"] / max(1, window["steps"])
            schedule.observe(mean_loss)
            window = {"loss": 0.0, "steps": 0}
            if info.is_main:
                t_eval = time.perf_counter()
                metrics = evaluate_tasks(raw_model, tasks, val_audio, config.eval_batch_size, device)
                model.train()
                set_batchnorm_mode(model, config.batchnorm)
                writer.write({"step": step, "train_loss_window": mean_loss, **metrics})
                if metrics:
                    logger.info("eval at step %d (%.1fs): %s", step, time.perf_counter() - t_eval,
                                ", ".join(f"{k}={v:.3f}" for k, v in metrics.items()))
                last.update(metrics)
            barrier(info)
            t_log = time.perf_counter()

        if step % config.save_every == 0 or step == config.max_steps:
            if info.is_main:
                ckpt.save_checkpoint(
                    {"model": raw_model.state_dict(), "optimizer": optimizer.state_dict(),
                     "schedule": schedule.state_dict(), "scaler": scaler.state_dict() if scaler.is_enabled() else {},
                     "rng": ckpt.rng_state(), "step": step, "window": window, "config": config.to_dict(),
                     "model_config": clap_config.to_dict(), "tasks": [t.info() for t in tasks],
                     "version": openclap.__version__},
                    run_dir / "checkpoints", step, config.keep_checkpoints)
            barrier(info)

    final_dir = None
    if info.is_main:
        final_dir = run_dir / "final"
        tower = {k: v.detach().cpu() for k, v in raw_model.state_dict().items()
                 if k.startswith(("audio_frontend.", "audio_encoder."))}
        task_info = [{**t.info(), "val": {k.split("/")[-1]: v for k, v in last.items()
                                          if k.startswith(f"val/{t.name}/")}} for t in tasks]
        save_audio_tower(tower, clap_config, final_dir, task_info)
        logger.info("saved the audio tower (heads dropped) to %s; start CLAP from it with init_audio: %s",
                    final_dir, final_dir)
    writer.close()
    barrier(info)
    return PretrainResult(run_dir, step, final_dir, last)


# -------------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``openclap pretrain-audio`` and ``python -m openclap_train.multitask`` (the trainer's)."""
    from openclap_train.train import add_arguments as add_train_arguments

    add_train_arguments(parser, example="configs/pretrain-audio/shared-data-7tasks.yaml")


def run_from_args(args: argparse.Namespace) -> int:
    """Load the config from parsed arguments and pretrain; returns an exit code."""
    config = load_pretrain_config(args.config, args.overrides, {"max_steps": args.max_steps, "seed": args.seed})
    pretrain(config, args.run_dir, resume=args.resume)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m openclap_train.multitask`` (torchrun); a test can call it in-process."""
    from openclap_train.train import setup_logging

    parser = argparse.ArgumentParser(prog="python -m openclap_train.multitask",
                                     description="Multi-task pretraining of a CLAP audio tower.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    setup_logging()
    try:
        return run_from_args(args)
    except (TrainConfigError, FileNotFoundError) as exc:
        print(f"openclap pretrain-audio: error: {exc}", file=sys.stderr)
        return 2
