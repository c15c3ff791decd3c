"""Multi-task audio-encoder pretraining (the paper's "HTSAT-22" stage): ``openclap pretrain-audio``.

One process::

    openclap pretrain-audio configs/pretrain-audio/shared-data-7tasks.yaml --run-dir runs/pt

Several processes (gloo on CPU, NCCL on GPUs)::

    torchrun --nproc_per_node 2 -m openclap_train.multitask configs/pretrain-audio/shared-data-7tasks.yaml --run-dir runs/pt

Resume: the same command plus ``--resume latest`` (bitwise identical on CPU in fp32 with the same number
of processes). The run directory is laid out as ``openclap train``'s (the same loop, ``openclap_train.engine``,
runs both): ``config.yaml``, ``model_config.json``,
``metrics.jsonl`` (train loss per task, ``val/<task>/<metric>``), ``checkpoints/`` (tower + heads,
optimiser, schedule, RNG, step) and ``final/``, an audio-tower directory (heads dropped) that
``openclap train`` takes as ``init_audio`` (see ``openclap_train.audio_tower``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from openclap.config import ClapConfig
from openclap.factory import resolve_config
from openclap_train import engine
from openclap_train.audio_tower import TOWER_PREFIXES, load_audio_tower, save_audio_tower
from openclap_train.config import TrainConfigError, deep_merge
from openclap_train.distributed import DistInfo
from openclap_train.engine import RunResult, Task, freeze_unused_heads
from openclap_train.multitask.config import PretrainConfig, load_pretrain_config
from openclap_train.multitask.data import MultiTaskDataset, batch_targets, multitask_loader
from openclap_train.multitask.evaluate import ValAudio, evaluate_tasks
from openclap_train.multitask.model import MultiTaskAudioModel, multitask_loss
from openclap_train.multitask.sampling import MultiTaskBatchSampler, task_probabilities
from openclap_train.multitask.tasks import TaskData, load_tasks

logger = logging.getLogger("openclap_train")

PretrainResult = RunResult  # the name callers of pretrain() know


def model_config_of(config: PretrainConfig) -> ClapConfig:
    """The ClapConfig the tower is built from: the preset (or model dir) with ``model_overrides`` applied."""
    return ClapConfig.from_dict(deep_merge(resolve_config(config.model).to_dict(), config.model_overrides))


def build_model(
    config: PretrainConfig, tasks: list[TaskData], clap_config: ClapConfig
) -> MultiTaskAudioModel:
    """Tower + heads, seeded from ``config.seed``; the tower from ``init_audio`` when given."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = MultiTaskAudioModel(clap_config.audio, {t.name: t.num_outputs for t in tasks}, config.head)
    if config.init_audio:
        load_audio_tower(model, config.init_audio)
        logger.info("audio tower initialised from %s", config.init_audio)
    freeze_unused_heads(model.audio_encoder)  # classifier heads of the encoder never get a loss
    return model


class MultiTaskPretraining(Task):
    """The audio tower and one head per task, trained on a task mixture (the paper's "HTSAT-22" stage)."""

    kind = "pretrain-audio"

    def __init__(self, config: PretrainConfig) -> None:
        config.require_tasks()
        self.config = config
        self.task_window: dict[str, list[float]] = {}

    def build(self, run_dir: Path, info: DistInfo) -> None:
        config = self.config
        self.tasks = load_tasks(config.tasks)
        self.clap_config = model_config_of(config)
        self.model = build_model(config, self.tasks, self.clap_config)
        self.val_audio = ValAudio(self.clap_config.audio.sample_rate)
        self.names, self.kinds = [t.name for t in self.tasks], [t.kind for t in self.tasks]
        self.weights = [t.spec.weight for t in self.tasks]
        sizes = [len(t) for t in self.tasks]
        self.probs = task_probabilities(sizes, config.sampling.policy, config.sampling.temperature)

    def batches(self, start_step: int, info: DistInfo, device: torch.device) -> Iterator[dict[str, Any]]:
        config = self.config
        sampler = MultiTaskBatchSampler(
            [len(t) for t in self.tasks],
            self.probs,
            config.batch_size,
            config.seed,
            config.sampling.batches,
            info.rank,
            info.world_size,
            config.grad_accum,
            start_step=start_step,
        )
        dataset = MultiTaskDataset(
            self.tasks, self.clap_config.audio, config.seed, config.augment, config.cache_audio
        )
        return iter(multitask_loader(dataset, sampler, config.num_workers))

    def training_forward(self, batch: dict[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
        outputs = self.train_module(batch["waveform"].to(device, non_blocking=True))
        targets = batch_targets(batch, self.tasks, device)
        loss, parts = multitask_loss(
            outputs, batch["task"].to(device), targets, self.kinds, self.names, self.weights
        )
        for name, (total, rows) in parts.items():  # per-task train loss since the last log line
            acc = self.task_window.setdefault(name, [0.0, 0])
            acc[0] += total
            acc[1] += rows
        return {"tasks": loss}

    def log_record(self, step: int) -> dict[str, Any]:
        # per-task train loss over the rows this rank saw since the last log line
        record: dict[str, Any] = {f"train/{n}/loss": s / max(1, k) for n, (s, k) in self.task_window.items()}
        record.update({f"train/{n}/rows": k for n, (s, k) in self.task_window.items()})
        self.task_window = {}
        return record

    def evaluate(self, device: torch.device) -> dict[str, float]:
        return evaluate_tasks(self.model, self.tasks, self.val_audio, self.config.eval_batch_size, device)

    def checkpoint_extra(self, step: int) -> dict[str, Any]:
        return {"tasks": [t.info() for t in self.tasks]}

    def model_config(self) -> dict[str, Any]:
        return self.clap_config.to_dict()

    def write_run_files(self, run_dir: Path) -> None:
        (run_dir / "tasks.json").write_text(json.dumps([t.info() for t in self.tasks], indent=2) + "\n")

    def describe(self, total_steps: int) -> str:
        return (
            f"pretrain-audio {self.clap_config.name}: {len(self.tasks)} tasks ({', '.join(self.names)}); "
            f"sampling {self.config.sampling.policy} -> {[round(float(p), 3) for p in self.probs]}; "
            f"{total_steps} steps"
        )

    def export(self, final_dir: Path, last: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
        tower = {
            k: v.detach().cpu() for k, v in self.model.state_dict().items() if k.startswith(TOWER_PREFIXES)
        }
        task_info = [
            {
                **t.info(),
                "val": {k.split("/")[-1]: v for k, v in last.items() if k.startswith(f"val/{t.name}/")},
            }
            for t in self.tasks
        ]
        save_audio_tower(tower, self.clap_config, final_dir, task_info)
        logger.info(
            "the audio tower (heads dropped) is in %s; start CLAP from it with init_audio: %s",
            final_dir,
            final_dir,
        )
        return final_dir, {}


def pretrain(config: PretrainConfig, run_dir: str | Path, resume: str | None = None) -> RunResult:
    """Run (or resume) multi-task pretraining; returns after ``max_steps``."""
    return engine.run(MultiTaskPretraining(config), run_dir, resume)


# -------------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``openclap pretrain-audio`` and ``python -m openclap_train.multitask`` (the trainer's)."""
    from openclap_train.train import add_arguments as add_train_arguments

    add_train_arguments(parser, example="configs/pretrain-audio/shared-data-7tasks.yaml")


def run_from_args(args: argparse.Namespace) -> int:
    """Load the config from parsed arguments and pretrain; returns an exit code."""
    config = load_pretrain_config(
        args.config, args.overrides, {"max_steps": args.max_steps, "seed": args.seed}
    )
    pretrain(config, args.run_dir, resume=args.resume)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m openclap_train.multitask`` (torchrun); a test can call it in-process."""
    from openclap_train.train import setup_logging

    parser = argparse.ArgumentParser(
        prog="python -m openclap_train.multitask", description="Multi-task pretraining of a CLAP audio tower."
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    setup_logging()
    try:
        return run_from_args(args)
    except (TrainConfigError, FileNotFoundError) as exc:
        print(f"openclap pretrain-audio: error: {exc}", file=sys.stderr)
        return 2
