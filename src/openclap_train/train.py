"""The training loop: ``python -m openclap_train CONFIG --run-dir DIR`` or ``openclap train CONFIG ...``.

One CPU process::

    openclap train configs/small-shared-data.yaml --run-dir runs/small

Several processes (CPU with gloo, or one per GPU with NCCL)::

    torchrun --nproc_per_node 2 -m openclap_train configs/small-shared-data.yaml --run-dir runs/small

Resume after an interruption (the same command plus ``--resume latest``; with the same number of
processes on CPU in fp32 the result is bitwise identical to an uninterrupted run)::

    openclap train configs/small-shared-data.yaml --run-dir runs/small --resume latest

The run directory gets ``config.yaml`` (resolved), ``metrics.jsonl``, ``tb/`` (TensorBoard, when
installed), ``tokenizer/`` (when trained), ``checkpoints/`` and ``final/`` (``openclap.load(final)``).
Rank 0 alone logs and writes; every rank loads the same checkpoint on resume.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import json
import logging
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import openclap
from openclap.cli import add_recipe_arguments
from openclap.config import ClapConfig
from openclap.factory import (
    TOKENIZER_DIR,
    WEIGHTS_NAME,
    create_model,
    is_model_dir,
    load_checkpoint,
    resolve_config,
)
from openclap.loss import ClipLoss
from openclap.model import ClapModel
from openclap.pipeline import ClapPipeline
from openclap.text.tokenizer import TextTokenizer
from openclap_train import checkpoint as ckpt
from openclap_train.audio_tower import load_audio_tower
from openclap_train.config import TrainConfig, TrainConfigError, load_config, save_config
from openclap_train.data import (
    EpochBatchSampler,
    ManifestDataset,
    ShardStream,
    expand_shards,
    load_eval_set,
    manifest_loader,
    read_manifest,
    shard_loader,
)
from openclap_train.distributed import DistInfo, barrier, broadcast_object, cleanup, init_distributed
from openclap_train.engine import (
    LrSchedule,
    build_optimizer,
    freeze_parameters,
    optimizer_step,
    set_train_mode,
    step_seed,
)
from openclap_train.evaluate import evaluate

logger = logging.getLogger("openclap_train")


@dataclass
class TrainResult:
    """What a finished run returns (rank 0 has the metrics)."""

    run_dir: Path
    step: int
    final_dir: Path | None
    last_metrics: dict[str, Any] = field(default_factory=dict)


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in update.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _device(config: TrainConfig, info: DistInfo) -> torch.device:
    if config.device != "auto":
        return torch.device(config.device)
    return torch.device(f"cuda:{info.local_rank}") if torch.cuda.is_available() else torch.device("cpu")


def _captions(config: TrainConfig) -> list[str]:
    if any(s.is_shards for s in config.train_manifest):
        raise TrainConfigError("tokenizer: train needs CSV/JSONL train manifests (captions of shards are not scanned); "
                               "train it once with `openclap tokenizer train` and pass the directory")
    samples = [s for spec in config.train_manifest for s in read_manifest(spec)]
    # every caption the text tower can see: the rows' own (pools draw from these) and their extra captions
    return [s.caption for s in samples] + [c for s in samples for c in s.extras]


def prepare_model(config: TrainConfig, run_dir: Path, info: DistInfo) -> tuple[ClapModel, TextTokenizer]:
    """Model config (preset + overrides + tokenizer vocabulary), tokenizer, and the initialised model."""
    base = resolve_config(config.model)
    tok_path: Path | None = None
    if config.tokenizer == "train":
        tok_path = run_dir / "tokenizer"
        if info.is_main and not (tok_path / "tokenizer.json").is_file():
            from openclap_train.tokenizer_train import train_bpe

            train_bpe(_captions(config), tok_path, vocab_size=config.tokenizer_vocab_size)
        barrier(info)
    elif config.tokenizer is not None:
        tok_path = Path(config.tokenizer)
    elif config.init and is_model_dir(config.init) and (Path(config.init) / TOKENIZER_DIR).is_dir():
        tok_path = Path(config.init) / TOKENIZER_DIR
    elif is_model_dir(config.model) and (Path(config.model) / TOKENIZER_DIR).is_dir():
        tok_path = Path(config.model) / TOKENIZER_DIR
    data = _deep_merge(base.to_dict(), config.model_overrides)
    if tok_path is not None:
        tokenizer = TextTokenizer(ClapConfig.from_dict(data).text, tok_path)
        data["text"]["tokenizer"] = str(tok_path.resolve())
        if config.tokenizer == "train":  # a from-scratch text tower takes the new vocabulary
            eos = tokenizer.token_to_id("<|endoftext|>")
            data["text"]["transformer"]["vocab_size"] = tokenizer.vocab_size
            if data["text"]["encoder"] == "gpt2" and eos is not None:
                data["text"]["transformer"].update(bos_token_id=eos, eos_token_id=eos)
    model_config = ClapConfig.from_dict(data)
    tokenizer = TextTokenizer(model_config.text, tok_path)
    model = create_model(model_config, seed=config.seed)
    if config.init:
        init = Path(config.init)
        if is_model_dir(init):
            load_checkpoint(model, init / WEIGHTS_NAME)
        else:
            load_checkpoint(model, init)
        logger.info("initialised from %s", init)
    if config.init_audio:
        load_audio_tower(model, config.init_audio)
        logger.info("audio tower initialised from %s", config.init_audio)
    if config.init_text:
        model.text_encoder.load_transformer_weights(config.init_text)
        logger.info("text tower initialised from %s", config.init_text)
    if model.text_encoder.max_positions < model_config.text.max_length:
        raise TrainConfigError(f"text max_length {model_config.text.max_length} exceeds the text tower's "
                               f"{model.text_encoder.max_positions} positions")
    return model, tokenizer


def _autocast(config: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager:
    if config.precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if config.precision == "bf16" else torch.float16
    if device.type != "cuda" and config.precision == "fp16":
        raise TrainConfigError("precision fp16 needs CUDA; use bf16 or fp32 on CPU")
    return torch.autocast(device.type, dtype=dtype)


class _MetricsWriter:
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


def _truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop metric lines written after the checkpoint's step (they will be written again)."""
    if not path.is_file():
        return
    keep = [line for line in path.read_text(encoding="utf-8").splitlines() if line and json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in keep), encoding="utf-8")


def train(config: TrainConfig, run_dir: str | Path, resume: str | None = None) -> TrainResult:
    """Run (or resume) training as ``config`` says; returns when ``max_steps``/``epochs`` are done."""
    ensure_progress_logging()
    config.require_data()
    run_dir = Path(run_dir)
    device_kind = "cuda" if (config.device == "auto" and torch.cuda.is_available()) or config.device.startswith("cuda") else "cpu"
    info = init_distributed(device_kind)
    try:
        return _train(config, run_dir, resume, info)
    finally:
        cleanup(info)


def _train(config: TrainConfig, run_dir: Path, resume: str | None, info: DistInfo) -> TrainResult:
    device = _device(config, info)
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
        raise TrainConfigError(f"{run_dir} already holds checkpoints: pass --resume latest to continue that run, "
                               "or choose a new --run-dir")
    if resume_path is not None:
        state = ckpt.load_checkpoint_file(resume_path)
        if state["config"] != config.to_dict() and info.is_main:
            diff = sorted(k for k in config.to_dict() if config.to_dict()[k] != state["config"].get(k))
            logger.warning("resuming %s with a changed config (keys %s); the run will not be bitwise reproducible",
                           resume_path, diff)

    model, tokenizer = prepare_model(config, run_dir, info)
    if state is not None:
        model.load_state_dict(state["model"])
    freeze_parameters(model, config)
    if config.batchnorm == "sync" and info.enabled:
        if device.type != "cuda":  # torch's SyncBatchNorm runs on accelerators only
            raise TrainConfigError("batchnorm: sync needs CUDA devices; on CPU use batchnorm: frozen (or train)")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    raw_model: ClapModel = model
    optimizer = build_optimizer(model, config)
    scaler = torch.amp.GradScaler("cuda", enabled=config.precision == "fp16" and device.type == "cuda")

    # ---- data
    if all(s.is_shards for s in config.train_manifest):
        if config.positives != "index" or any(s.uses_caption_extras or s.repeat > 1 for s in config.train_manifest):
            raise TrainConfigError("positives: label, caption_pool, extra_captions and repeat need CSV/JSONL "
                                   "manifests (shards carry no label columns); remove them or use manifests")
        if config.max_steps is None:
            raise TrainConfigError("WebDataset shards need max_steps (the stream has no fixed epoch length)")
        steps_per_epoch, total_steps = None, config.max_steps
    elif any(s.is_shards for s in config.train_manifest):
        raise TrainConfigError("train_manifest mixes manifests and shard patterns; use one kind")
    else:
        samples = [s for spec in config.train_manifest for s in read_manifest(spec)]
        steps_per_epoch = len(samples) // config.batch_size
        if steps_per_epoch == 0:
            raise TrainConfigError(f"{len(samples)} training samples are fewer than batch_size {config.batch_size}")
        total_steps = config.max_steps if config.max_steps is not None else config.epochs * steps_per_epoch  # type: ignore[operator]
    schedule = LrSchedule(config, total_steps)

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

    micro = config.batch_size // (info.world_size * config.grad_accum)
    if config.batch_size % (info.world_size * config.grad_accum):
        raise TrainConfigError(f"batch_size {config.batch_size} must be divisible by processes x grad_accum "
                               f"= {info.world_size * config.grad_accum}")
    if steps_per_epoch is None:
        urls = [u for spec in config.train_manifest for u in expand_shards(spec.path)]
        stream = ShardStream(urls, raw_model.config.audio, tokenizer, micro, config.seed, info.rank, info.world_size,
                             config.num_workers, skip_batches=step * config.grad_accum,
                             shuffle_buffer=config.shuffle_buffer, augment=config.augment)
        loader = shard_loader(stream, config.num_workers)
    else:
        dataset = ManifestDataset(samples, raw_model.config.audio, config.seed, config.augment, config.cache_audio)
        sampler = EpochBatchSampler(len(samples), config.batch_size, config.seed, info.rank, info.world_size,
                                    config.grad_accum, start_step=step)
        loader = manifest_loader(dataset, sampler, tokenizer, config.num_workers)

    eval_sets = [load_eval_set(spec, raw_model.config.audio.sample_rate) for spec in config.val_manifest] \
        if info.is_main else []

    if info.enabled:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False
        )
    forward_model = torch.compile(model) if config.compile else model
    loss_fn = ClipLoss(info.rank, info.world_size)

    if info.is_main:
        save_config(config, run_dir / "config.yaml")
        (run_dir / "model_config.json").write_text(json.dumps(raw_model.config.to_dict(), indent=2) + "\n")
        _truncate_metrics(run_dir / "metrics.jsonl", step)
        n_train = sum(p.numel() for p in raw_model.parameters() if p.requires_grad)
        logger.info("model %s: %.2fM trainable parameters; %d processes; %s steps (%s per epoch); device %s",
                    raw_model.config.name, n_train / 1e6, info.world_size, total_steps, steps_per_epoch, device)
    writer = _MetricsWriter(run_dir, info.is_main)
    set_train_mode(model, config)
    last: dict[str, Any] = {}
    data_iter = iter(loader)
    t_log, wait_log, steps_log = time.perf_counter(), 0.0, 0

    def loss_of(batch: dict[str, Any]) -> torch.Tensor:
        with _autocast(config, device):
            out = forward_model(
                batch["waveform"].to(device, non_blocking=True),
                batch["input_ids"].to(device, non_blocking=True),
                batch["attention_mask"].to(device, non_blocking=True),
            )
            labels = positive_labels(batch, device) if config.positives == "label" else None
            return loss_fn(out.audio_embeds, out.text_embeds, raw_model.logit_scale, labels)

    while step < total_steps:
        torch.manual_seed(step_seed(config.seed, step, info.rank))
        lr = schedule.lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        step_loss, wait = optimizer_step(model, optimizer, scaler, data_iter, loss_of, config.grad_accum,
                                         config.grad_clip, info.enabled)
        wait_log += wait
        step += 1
        steps_log += 1
        window["loss"] += step_loss
        window["steps"] += 1

        if step % config.log_every == 0 or step == total_steps:
            elapsed = time.perf_counter() - t_log
            record = {
                "step": step,
                "epoch": (step - 1) // steps_per_epoch if steps_per_epoch else None,
                "loss": step_loss,
                "lr": lr,
                "logit_scale": float(raw_model.scale().detach()),
                "samples_per_s": steps_log * config.batch_size / max(elapsed, 1e-9),
                "data_wait": wait_log / max(elapsed, 1e-9),
            }
            writer.write(record)
            if info.is_main:
                logger.info("step %d/%d loss %.4f lr %.2e scale %.1f %.1f samples/s data-wait %.0f%%", step,
                            total_steps, step_loss, lr, record["logit_scale"], record["samples_per_s"],
                            100 * record["data_wait"])
            last.update(record)
            t_log, wait_log, steps_log = time.perf_counter(), 0.0, 0

        if (config.eval_every and step % config.eval_every == 0) or step == total_steps:
            mean_loss = window["loss"] / max(1, window["steps"])
            schedule.observe(mean_loss)  # same value on every rank: the loss is the global-batch loss
            window = {"loss": 0.0, "steps": 0}
            if eval_sets:
                t_eval = time.perf_counter()
                metrics = evaluate(raw_model, tokenizer, eval_sets, config.zeroshot_template,
                                   config.eval_batch_size, device)
                set_train_mode(model, config)
                writer.write({"step": step, "train_loss_window": mean_loss, **metrics})
                logger.info("eval at step %d (%.1fs): %s", step, time.perf_counter() - t_eval,
                            ", ".join(f"{k}={v:.3f}" for k, v in metrics.items()))
                last.update(metrics)
            barrier(info)
            t_log = time.perf_counter()

        if step % config.save_every == 0 or step == total_steps:
            if info.is_main:
                ckpt.save_checkpoint(
                    {
                        "model": raw_model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "schedule": schedule.state_dict(),
                        "scaler": scaler.state_dict() if scaler.is_enabled() else {},
                        "rng": ckpt.rng_state(),
                        "step": step,
                        "epoch": step // steps_per_epoch if steps_per_epoch else None,
                        "step_in_epoch": step % steps_per_epoch if steps_per_epoch else None,
                        "window": window,
                        "config": config.to_dict(),
                        "model_config": raw_model.config.to_dict(),
                        "version": openclap.__version__,
                    },
                    run_dir / "checkpoints", step, config.keep_checkpoints,
                )
            barrier(info)

    final_dir = None
    if info.is_main:
        final_dir = run_dir / "final"
        export = copy.deepcopy(raw_model).cpu()
        if config.batchnorm == "sync" and info.enabled:
            export = _revert_sync_batchnorm(export)
        if export.config.text.tokenizer is not None:  # the copy in final/tokenizer, not this run's folder
            text = dataclasses.replace(export.config.text, tokenizer=TOKENIZER_DIR)
            export.config = dataclasses.replace(export.config, text=text)
        ClapPipeline(export, tokenizer).save_pretrained(final_dir)
        logger.info("saved the final model to %s (openclap.load(%r) reads it)", final_dir, str(final_dir))
    writer.close()
    barrier(info)
    return TrainResult(run_dir, step, final_dir, last)


def positive_labels(batch: dict[str, Any], device: torch.device) -> torch.Tensor:
    """(B, 2) labels for ``positives: label``: the item's label group (per manifest) and a hash of its
    caption text, so that pairs of the same class or with the same caption count as positives."""
    captions = torch.tensor([zlib.crc32(c.encode("utf-8")) for c in batch["captions"]], dtype=torch.long)
    return torch.stack([batch["group"], captions], dim=1).to(device)


def _revert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Replace SyncBatchNorm layers by BatchNorm2d (same state), for a plain inference model."""
    out = module
    if isinstance(module, nn.SyncBatchNorm):
        out = nn.BatchNorm2d(module.num_features, module.eps, module.momentum, module.affine,
                             module.track_running_stats)
        out.load_state_dict(module.state_dict())
    for name, child in module.named_children():
        out.add_module(name, _revert_sync_batchnorm(child))
    return out


# -------------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser, example: str = "configs/small-shared-data.yaml") -> None:
    """Arguments shared by ``openclap train``, ``openclap pretrain-audio`` and their ``python -m`` forms."""
    add_recipe_arguments(parser, example)


def run_from_args(args: argparse.Namespace) -> int:
    """Load the config from parsed arguments and train; returns an exit code."""
    config = load_config(args.config, args.overrides, {"max_steps": args.max_steps, "seed": args.seed})
    train(config, args.run_dir, resume=args.resume)
    return 0


def setup_logging() -> None:
    """Log INFO on rank 0 and WARNING elsewhere, to stderr."""
    import os

    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


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


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m openclap_train``; a test can call it in-process on CPU."""
    parser = argparse.ArgumentParser(prog="python -m openclap_train", description="Train a CLAP model.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    setup_logging()
    try:
        return run_from_args(args)
    except (TrainConfigError, FileNotFoundError) as exc:
        print(f"openclap_train: error: {exc}", file=sys.stderr)
        return 2
