"""The one training loop of openclap_train; tasks (CLAP, multi-task pretraining, captioning) plug into it.

A ``Task`` owns its model, data and losses (``training_forward(batch) -> {name: loss}``), its evaluation
and its export; ``run(task, run_dir, resume)`` owns everything else: process group, device, optimiser
(``optim:``), learning-rate schedule, precision, gradient accumulation and clipping, DDP, logging
(``metrics.jsonl`` + TensorBoard), evaluation cadence, atomic checkpoints (model, optimiser, schedule,
scaler, RNG, step and data position), keep-last-K and exact resume.

Exact resume: data order and per-sample randomness are functions of (seed, epoch, index) in the tasks'
samplers, and the global RNG is reseeded from (seed, step, rank) before every step (``step_seed``), so a
resumed run draws what the uninterrupted one drew.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import openclap
from openclap_train import checkpoint as ckpt
from openclap_train.config import LoopConfig, OptimConfig, TrainConfigError, save_config
from openclap_train.distributed import (
    DistInfo,
    barrier,
    broadcast_object,
    cleanup,
    init_distributed,
    mean_across,
)
from openclap_train.schedule import LrSchedule

logger = logging.getLogger("openclap_train")

# Heads that exist for checkpoint compatibility but never feed a loss: HTSAT's token-semantic classifier
# (tscam_conv, head) and CNN14's AudioSet classifier. They are frozen so that optimisers and DDP see only
# parameters that get gradients.
UNUSED_AUDIO_HEADS = ("tscam_conv.", "head.", "fc_audioset.")


@dataclass
class RunResult:
    """What a finished run returns (rank 0 has the metrics; ``eval`` is the task's final evaluation)."""

    run_dir: Path
    step: int
    final_dir: Path | None
    last_metrics: dict[str, Any] = field(default_factory=dict)
    eval: dict[str, Any] = field(default_factory=dict)


class Task:
    """What the engine trains. Subclasses set ``config`` and implement the hooks; ``model`` is built by
    ``build`` on CPU, moved and (when distributed) wrapped by the engine into ``train_module``."""

    config: LoopConfig
    model: nn.Module
    train_module: nn.Module  # the module to call in training_forward: DDP-wrapped when distributed
    kind = "task"  # for log lines

    def build(self, run_dir: Path, info: DistInfo) -> None:
        """Build ``self.model`` (seeded, on CPU) and whatever the task needs (tokenizer, datasets)."""
        raise NotImplementedError

    def total_steps(self, info: DistInfo) -> int:
        """Optimiser steps of the run (the schedule's length)."""
        assert self.config.max_steps is not None
        return self.config.max_steps

    def batches(self, start_step: int, info: DistInfo, device: torch.device) -> Iterator[dict[str, Any]]:
        """This rank's micro-batches from optimiser step ``start_step`` on (``grad_accum`` per step)."""
        raise NotImplementedError

    def training_forward(self, batch: dict[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
        """Named scalar losses of one micro-batch (the engine sums them)."""
        raise NotImplementedError

    def train_mode(self, model: nn.Module) -> None:
        """After the engine's ``train()`` and BatchNorm policy: e.g. put frozen towers back in eval mode."""

    def evaluate(self, device: torch.device) -> dict[str, float]:
        """Validation metrics (rank 0 only); an empty dict when the task has nothing to validate."""
        return {}

    def log_record(self, step: int) -> dict[str, Any]:
        """Extra fields of the log record after optimiser step ``step`` (e.g. the epoch, per-task losses)."""
        return {}

    def checkpoint_extra(self, step: int) -> dict[str, Any]:
        """Extra entries of a checkpoint (e.g. the data position)."""
        return {}

    def model_config(self) -> dict[str, Any]:
        """The model config written as ``model_config.json`` and into checkpoints."""
        return {}

    def write_run_files(self, run_dir: Path) -> None:
        """Files beside ``config.yaml`` (rank 0, once per start)."""

    def describe(self, total_steps: int) -> str:
        """One log line about the run."""
        return f"{self.kind}: {total_steps} steps"

    def export(self, final_dir: Path, last: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
        """Write the final model (rank 0); returns its directory and the task's final evaluation."""
        raise NotImplementedError


# ------------------------------------------------------------------------------------- optimiser
def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two groups: matrices/convolutions with weight decay; norms, biases, embeddings' 1-d params and
    the logit scale without (CLIP's rule: decay only tensors with ndim >= 2)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or name.endswith("logit_scale") or ".bn" in name or "norm" in name.lower():
            no_decay.append(p)
        else:
            decay.append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, config: OptimConfig) -> torch.optim.Optimizer:
    """AdamW (decoupled decay) or Adam (the paper's choice: Adam, lr 1e-3) over the trainable parameters."""
    groups = param_groups(model, config.weight_decay)
    if config.optimizer == "adam":  # Adam's weight_decay is an L2 term, applied to the decay group only
        return torch.optim.Adam(groups, lr=config.lr, betas=config.betas, eps=config.eps)
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, eps=config.eps)


def freeze_unused_heads(encoder: nn.Module) -> None:
    """Freeze the audio encoder's classifier heads (they never get a loss)."""
    for name, p in encoder.named_parameters():
        if name.startswith(UNUSED_AUDIO_HEADS):
            p.requires_grad_(False)


def set_batchnorm_mode(model: nn.Module, mode: str) -> None:
    """After ``model.train()``: put BatchNorm layers in eval mode when ``mode == "frozen"`` (running stats)."""
    if mode == "frozen":
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


def step_seed(seed: int, step: int, rank: int) -> int:
    """Seed of the global torch RNG for optimiser step ``step`` on ``rank`` (dropout, drop-path).

    Reseeding every step makes the model's randomness a function of (seed, step, rank), so a resumed run
    draws what the uninterrupted run drew without replaying RNG history.
    """
    return (seed * 1_000_003 + step * 8191 + rank * 131_071) % (1 << 62)


def optimizer_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    batches: Iterator[dict[str, Any]],
    loss_of: Callable[[dict[str, Any]], torch.Tensor],
    grad_accum: int,
    grad_clip: float | None,
    distributed: bool,
) -> tuple[float, float]:
    """One optimiser step over ``grad_accum`` micro-batches -> (this rank's mean loss, seconds waiting for data).

    ``loss_of(batch)`` runs the forward pass and returns the scalar loss; DDP syncs gradients only on the
    last micro-batch.
    """
    optimizer.zero_grad(set_to_none=True)
    step_loss, wait = 0.0, 0.0
    for a in range(grad_accum):
        t0 = time.perf_counter()
        batch = next(batches)
        wait += time.perf_counter() - t0
        sync = contextlib.nullcontext() if (not distributed or a == grad_accum - 1) else model.no_sync()
        with sync:
            loss = loss_of(batch)
            scaler.scale(loss / grad_accum).backward()
        step_loss += loss.item() / grad_accum
    if grad_clip is not None:
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return step_loss, wait


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The forward pass's autocast context for ``precision`` (fp32: none)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if device.type != "cuda" and precision == "fp16":
        raise TrainConfigError("precision fp16 needs CUDA; use bf16 or fp32 on CPU")
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def pick_device(config: LoopConfig, info: DistInfo) -> torch.device:
    """``config.device``, or (auto) this rank's GPU when CUDA is available, else the CPU."""
    if config.device != "auto":
        return torch.device(config.device)
    return torch.device(f"cuda:{info.local_rank}") if torch.cuda.is_available() else torch.device("cpu")


# ------------------------------------------------------------------------------------- bookkeeping
class MetricsWriter:
    """metrics.jsonl (+ TensorBoard when installed), rank 0 only."""

    def __init__(self, run_dir: Path, enabled: bool) -> None:
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"
        self.tb = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tb"))
            except ImportError:
                logger.info("tensorboard is not installed: metrics go to metrics.jsonl only")

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for k, v in record.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, record["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop metric lines written after the checkpoint's step (they will be written again)."""
    if not path.is_file():
        return
    keep = [
        line
        for line in path.read_text(encoding="utf-8").splitlines()
        if line and json.loads(line)["step"] <= step
    ]
    path.write_text("".join(line + "\n" for line in keep), encoding="utf-8")


def _revert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Replace SyncBatchNorm layers by BatchNorm2d (same state), for a plain inference model."""
    out = module
    if isinstance(module, nn.SyncBatchNorm):
        out = nn.BatchNorm2d(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        out.load_state_dict(module.state_dict())
    for name, child in module.named_children():
        out.add_module(name, _revert_sync_batchnorm(child))
    return out


class _StderrHandler(logging.StreamHandler):
    """A stream handler that writes to whatever ``sys.stderr`` is at the time of each record."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_trainer_logging() -> None:
    """Progress of the trainer (logger ``openclap_train``) at INFO on rank 0, whatever the root logger says."""
    import os

    rank = int(os.environ.get("RANK", "0"))
    log = logging.getLogger("openclap_train")
    if log.handlers:
        return
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter(f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    log.propagate = False


def ensure_progress_logging() -> None:
    """Show the trainer's progress when called from Python with no logging configured (no handler on the
    root or the ``openclap_train`` logger): the trainer is an application, its runs take minutes to hours."""
    if not logging.getLogger().handlers and not logging.getLogger("openclap_train").handlers:
        setup_trainer_logging()


# ------------------------------------------------------------------------------------------- loop
def run(task: Task, run_dir: str | Path, resume: str | None = None) -> RunResult:
    """Run (or resume, ``resume="latest"`` or a checkpoint path) ``task``; returns when its steps are done."""
    ensure_progress_logging()
    config = task.config
    cuda = (config.device == "auto" and torch.cuda.is_available()) or config.device.startswith("cuda")
    info = init_distributed("cuda" if cuda else "cpu")
    try:
        return _run(task, Path(run_dir), resume, info)
    finally:
        cleanup(info)


def _train_mode(task: Task, model: nn.Module) -> None:
    model.train()
    set_batchnorm_mode(model, task.config.batchnorm)
    task.train_mode(task.model)


def _run(task: Task, run_dir: Path, resume: str | None, info: DistInfo) -> RunResult:
    config = task.config
    device = pick_device(config, info)
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    barrier(info)

    # ---- which checkpoint to resume from (rank 0 decides, all ranks load the same file)
    state: dict[str, Any] | None = None
    resume_path: str | None = None
    if resume and info.is_main:
        resume_path = ckpt.find_resume_checkpoint(resume, run_dir / "checkpoints")
    if not resume and info.is_main and ckpt.list_checkpoints(run_dir / "checkpoints"):
        resume_path = "exists"
    resume_path = broadcast_object(resume_path, info)
    if resume_path == "exists":
        raise TrainConfigError(
            f"{run_dir} already holds checkpoints: pass --resume latest to continue that run, "
            "or choose a new --run-dir"
        )
    if resume_path is not None:
        state = ckpt.load_checkpoint_file(resume_path)
        if state["config"] != config.to_dict() and info.is_main:
            diff = sorted(k for k in config.to_dict() if config.to_dict()[k] != state["config"].get(k))
            logger.warning(
                "resuming %s with a changed config (keys %s); the run will not be bitwise reproducible",
                resume_path,
                diff,
            )

    task.build(run_dir, info)
    model = task.model
    if state is not None:
        model.load_state_dict(state["model"])
    if config.batchnorm == "sync" and info.enabled:
        if device.type != "cuda":  # torch's SyncBatchNorm runs on accelerators only
            raise TrainConfigError(
                "batchnorm: sync needs CUDA devices; on CPU use batchnorm: frozen (or train)"
            )
        model = task.model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    optimizer = build_optimizer(model, config.optim)
    scaler = torch.amp.GradScaler("cuda", enabled=config.precision == "fp16" and device.type == "cuda")
    total_steps = task.total_steps(info)
    schedule = LrSchedule(config.optim, total_steps)

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

    if config.batch_size % (info.world_size * config.grad_accum):
        raise TrainConfigError(
            f"batch_size {config.batch_size} must be divisible by processes x grad_accum "
            f"= {info.world_size * config.grad_accum}"
        )
    data_iter = iter(task.batches(step, info, device))

    task.train_module = model
    if info.enabled:
        task.train_module = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False
        )
    if info.is_main:
        save_config(config, run_dir / "config.yaml")
        if task.model_config():
            (run_dir / "model_config.json").write_text(json.dumps(task.model_config(), indent=2) + "\n")
        task.write_run_files(run_dir)
        truncate_metrics(run_dir / "metrics.jsonl", step)
        n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
        logger.info(
            "%s; %.2fM trainable parameters; %d processes; device %s",
            task.describe(total_steps),
            n_train / 1e6,
            info.world_size,
            device,
        )
    writer = MetricsWriter(run_dir, info.is_main)
    _train_mode(task, task.train_module)
    last: dict[str, Any] = {}
    t_log, wait_log, steps_log = time.perf_counter(), 0.0, 0

    def loss_of(batch: dict[str, Any]) -> torch.Tensor:
        with autocast(config.precision, device):
            losses = list(task.training_forward(batch, device).values())
        return losses[0] if len(losses) == 1 else torch.stack(losses).sum()

    while step < total_steps:
        torch.manual_seed(step_seed(config.seed, step, info.rank))
        lr = schedule.lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        step_loss, wait = optimizer_step(
            task.train_module,
            optimizer,
            scaler,
            data_iter,
            loss_of,
            config.grad_accum,
            config.optim.grad_clip,
            info.enabled,
        )
        step_loss = mean_across(step_loss, info)  # the global-batch loss (ranks hold equal-sized parts)
        wait_log += wait
        step += 1
        steps_log += 1
        window["loss"] += step_loss
        window["steps"] += 1

        if step % config.log_every == 0 or step == total_steps:
            elapsed = time.perf_counter() - t_log
            record = {
                "step": step,
                "loss": step_loss,
                "lr": lr,
                **task.log_record(step),
                "samples_per_s": steps_log * config.batch_size / max(elapsed, 1e-9),
                "data_wait": wait_log / max(elapsed, 1e-9),
            }
            writer.write(record)
            if info.is_main:
                logger.info(
                    "step %d/%d loss %.4f lr %.2e %.1f samples/s data-wait %.0f%%",
                    step,
                    total_steps,
                    step_loss,
                    lr,
                    record["samples_per_s"],
                    100 * record["data_wait"],
                )
            last.update(record)
            t_log, wait_log, steps_log = time.perf_counter(), 0.0, 0

        if (config.eval_every and step % config.eval_every == 0) or step == total_steps:
            mean_loss = window["loss"] / max(1, window["steps"])
            schedule.observe(mean_loss)  # same value on every rank: the global-batch loss
            window = {"loss": 0.0, "steps": 0}
            if info.is_main:
                t_eval = time.perf_counter()
                metrics = task.evaluate(device)
                _train_mode(task, task.train_module)
                if metrics:
                    writer.write({"step": step, "train_loss_window": mean_loss, **metrics})
                    logger.info(
                        "eval at step %d (%.1fs): %s",
                        step,
                        time.perf_counter() - t_eval,
                        ", ".join(f"{k}={v:.3f}" for k, v in metrics.items()),
                    )
                    last.update(metrics)
            barrier(info)
            t_log = time.perf_counter()

        if step % config.save_every == 0 or step == total_steps:
            if info.is_main:
                ckpt.save_checkpoint(
                    {
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "schedule": schedule.state_dict(),
                        "scaler": scaler.state_dict() if scaler.is_enabled() else {},
                        "rng": ckpt.rng_state(),
                        "step": step,
                        "window": window,
                        **task.checkpoint_extra(step),
                        "config": config.to_dict(),
                        "model_config": task.model_config(),
                        "version": openclap.__version__,
                    },
                    run_dir / "checkpoints",
                    step,
                    config.keep_checkpoints,
                )
            barrier(info)

    final_dir, evaluation = None, {}
    if info.is_main:
        if config.batchnorm == "sync" and info.enabled:
            task.model = _revert_sync_batchnorm(task.model)
        final_dir, evaluation = task.export(run_dir / "final", last)
        logger.info("saved the final model to %s", final_dir)
    writer.close()
    barrier(info)
    return RunResult(run_dir, step, final_dir, last, evaluation)
