"""CLAP training as a task of the engine: ``python -m openclap_train CONFIG --run-dir DIR`` or ``openclap train``.

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
import copy
import dataclasses
import logging
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

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
from openclap_train import engine
from openclap_train.audio_tower import load_audio_tower
from openclap_train.config import TrainConfig, TrainConfigError, deep_merge, load_config
from openclap_train.data import (
    EpochBatchSampler,
    ManifestDataset,
    ShardStream,
    expand_shards,
    load_eval_set,
    manifest_loader,
    read_train_manifests,
    shard_loader,
)
from openclap_train.distributed import DistInfo, barrier
from openclap_train.engine import (  # noqa: F401  (setup_trainer_logging re-exported for the CLI)
    RunResult,
    Task,
    ensure_progress_logging,
    freeze_unused_heads,
    setup_trainer_logging,
)
from openclap_train.evaluate import evaluate

logger = logging.getLogger("openclap_train")

TrainResult = RunResult  # the name callers of train() know


def _captions(config: TrainConfig) -> list[str]:
    if any(s.is_shards for s in config.train_manifest):
        raise TrainConfigError(
            "tokenizer: train needs CSV/JSONL train manifests (captions of shards are not scanned); "
            "train it once with `openclap tokenizer train` and pass the directory"
        )
    samples = read_train_manifests(config)
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
    data = deep_merge(base.to_dict(), config.model_overrides)
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
        raise TrainConfigError(
            f"text max_length {model_config.text.max_length} exceeds the text tower's "
            f"{model.text_encoder.max_positions} positions"
        )
    return model, tokenizer


class ClapTask(Task):
    """Contrastive training of a CLAP model (InfoNCE over the gathered global batch)."""

    kind = "clap"

    def __init__(self, config: TrainConfig) -> None:
        config.require_data()
        self.config = config
        self._forward: nn.Module | None = None

    def build(self, run_dir: Path, info: DistInfo) -> None:
        config = self.config
        self.model, self.tokenizer = prepare_model(config, run_dir, info)
        freeze_unused_heads(self.model.audio_encoder)
        if config.freeze_audio:
            self.model.audio_encoder.requires_grad_(False)
        if config.freeze_text:
            self.model.text_encoder.requires_grad_(False)
        self.loss_fn = ClipLoss(info.rank, info.world_size)
        self.eval_sets = (
            [load_eval_set(spec, self.model.config.audio.sample_rate) for spec in config.val_manifest]
            if info.is_main
            else []
        )

    def total_steps(self, info: DistInfo) -> int:
        config = self.config
        if all(s.is_shards for s in config.train_manifest):
            if config.positives != "index" or any(
                s.uses_caption_extras or s.repeat > 1 or s.augment for s in config.train_manifest
            ):
                raise TrainConfigError(
                    "positives: label, caption_pool, extra_captions, repeat and per-manifest augment need CSV/JSONL "
                    "manifests (shards carry no label columns); remove them or use manifests"
                )
            if config.max_steps is None:
                raise TrainConfigError(
                    "WebDataset shards need max_steps (the stream has no fixed epoch length)"
                )
            self.samples, self.steps_per_epoch = None, None
            return config.max_steps
        if any(s.is_shards for s in config.train_manifest):
            raise TrainConfigError("train_manifest mixes manifests and shard patterns; use one kind")
        self.samples = read_train_manifests(config)
        self.steps_per_epoch = len(self.samples) // config.batch_size
        if self.steps_per_epoch == 0:
            raise TrainConfigError(
                f"{len(self.samples)} training samples are fewer than batch_size {config.batch_size}"
            )
        return config.max_steps if config.max_steps is not None else config.epochs * self.steps_per_epoch  # type: ignore[operator]

    def batches(self, start_step: int, info: DistInfo, device: torch.device) -> Iterator[dict[str, Any]]:
        config, audio = self.config, self.model.config.audio
        if self.samples is None:
            micro = config.batch_size // (info.world_size * config.grad_accum)
            urls = [u for spec in config.train_manifest for u in expand_shards(spec.path)]
            stream = ShardStream(
                urls,
                audio,
                self.tokenizer,
                micro,
                config.seed,
                info.rank,
                info.world_size,
                config.num_workers,
                skip_batches=start_step * config.grad_accum,
                shuffle_buffer=config.shuffle_buffer,
                augment=config.augment,
            )
            return iter(shard_loader(stream, config.num_workers))
        dataset = ManifestDataset(self.samples, audio, config.seed, config.augment, config.cache_audio)
        sampler = EpochBatchSampler(
            len(self.samples),
            config.batch_size,
            config.seed,
            info.rank,
            info.world_size,
            config.grad_accum,
            start_step=start_step,
        )
        return iter(manifest_loader(dataset, sampler, self.tokenizer, config.num_workers))

    def training_forward(self, batch: dict[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
        if self._forward is None:
            self._forward = torch.compile(self.train_module) if self.config.compile else self.train_module
        out = self._forward(
            batch["waveform"].to(device, non_blocking=True),
            batch["input_ids"].to(device, non_blocking=True),
            batch["attention_mask"].to(device, non_blocking=True),
        )
        labels = positive_labels(batch, device) if self.config.positives == "label" else None
        return {
            "contrastive": self.loss_fn(out.audio_embeds, out.text_embeds, self.model.logit_scale, labels)
        }

    def train_mode(self, model: nn.Module) -> None:
        if self.config.freeze_audio:  # frozen towers stay in eval mode (no dropout)
            model.audio_encoder.eval()
        if self.config.freeze_text:
            model.text_encoder.eval()

    def evaluate(self, device: torch.device) -> dict[str, float]:
        if not self.eval_sets:
            return {}
        return evaluate(
            self.model,
            self.tokenizer,
            self.eval_sets,
            self.config.zeroshot_template,
            self.config.eval_batch_size,
            device,
        )

    def log_record(self, step: int) -> dict[str, Any]:
        per_epoch = self.steps_per_epoch
        return {
            "epoch": (step - 1) // per_epoch if per_epoch else None,
            "logit_scale": float(self.model.scale().detach()),
        }

    def checkpoint_extra(self, step: int) -> dict[str, Any]:
        per_epoch = self.steps_per_epoch
        return {
            "epoch": step // per_epoch if per_epoch else None,
            "step_in_epoch": step % per_epoch if per_epoch else None,
        }

    def model_config(self) -> dict[str, Any]:
        return self.model.config.to_dict()

    def describe(self, total_steps: int) -> str:
        return f"model {self.model.config.name}: {total_steps} steps ({self.steps_per_epoch} per epoch)"

    def export(self, final_dir: Path, last: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
        export = copy.deepcopy(self.model).cpu()
        if export.config.text.tokenizer is not None:  # the copy in final/tokenizer, not this run's folder
            text = dataclasses.replace(export.config.text, tokenizer=TOKENIZER_DIR)
            export.config = dataclasses.replace(export.config, text=text)
        ClapPipeline(export, self.tokenizer).save_pretrained(final_dir)
        logger.info("openclap.load(%r) reads the final model", str(final_dir))
        return final_dir, {}


def train(config: TrainConfig, run_dir: str | Path, resume: str | None = None) -> RunResult:
    """Run (or resume) CLAP training as ``config`` says; returns when ``max_steps``/``epochs`` are done."""
    return engine.run(ClapTask(config), run_dir, resume)


def positive_labels(batch: dict[str, Any], device: torch.device) -> torch.Tensor:
    """(B, 2) labels for ``positives: label``: the item's label group (per manifest) and a hash of its
    caption text, so that pairs of the same class or with the same caption count as positives."""
    captions = torch.tensor([zlib.crc32(c.encode("utf-8")) for c in batch["captions"]], dtype=torch.long)
    return torch.stack([batch["group"], captions], dim=1).to(device)


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
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


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
