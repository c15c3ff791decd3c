"""Typed configuration of multi-task audio-encoder pretraining (``openclap pretrain-audio``).

A recipe (``configs/pretrain-audio/*.yaml``) names an audio model, a list of tasks and the optimisation
settings. It is parsed with the trainer's YAML machinery (``openclap_train.config.build``: unknown keys
are errors, ``--set key=value`` overrides)::

    model: small                          # any preset or model directory; only its audio tower is built
    tasks:
      - name: digit
        manifest: {path: ../shared/data/fsdd/manifest.csv, split: train}
        target: digit                     # a column (or a list of columns for multi_label)
        type: single_label                # single_label | multi_label | regression
      - name: pitch
        manifest: {path: ../shared/data/instruments/manifest.csv, split: train}
        target: midi_pitch
        type: regression
        normalize: true                   # standardise with the training mean/std
    sampling: {policy: temperature, temperature: 0.5, batches: mixed}
    batch_size: 64
    max_steps: 500
    optim: {lr: 1.0e-3, weight_decay: 0.01}

The loop keys (``optim:``, ``batch_size``, ``max_steps``, ``precision``, ``save_every``, ...) are those of
every task (``openclap_train.config.LoopConfig``), read by the one training loop (``openclap_train.engine``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from openclap.builder import check_literals
from openclap_train.config import (
    AugmentConfig,
    LoopConfig,
    ManifestSpec,
    OptimConfig,
    TrainConfigError,
    read_recipe,
    save_config,
)


@dataclass
class TaskSpec:
    """One task: a manifest, its target column(s), the loss type and an optional loss weight.

    ``target``: the column holding the answer; for ``multi_label`` the column may hold several labels
    separated by ``separator`` (``"dog;bark"``), and several columns may be given (their labels are pooled,
    e.g. ``[register, dynamics]``). Rows whose target is empty are left out of the task (counted in the log).
    ``val_manifest``: rows used for this task's validation metrics; or ``holdout``: the fraction of the
    training rows held out for validation, chosen by a hash of the audio file name (so tasks that share a
    manifest hold out the same clips). ``classes`` fixes the class list (default: sorted training values).
    ``normalize`` (regression): standardise targets with the training mean and std (stored in
    ``tasks.json``); ``scale``/``offset`` are used instead when given: ``y = (value - offset) / scale``.
    """

    name: str
    manifest: ManifestSpec
    target: list[str]
    type: Literal["single_label", "multi_label", "regression"] = "single_label"
    weight: float = 1.0
    val_manifest: ManifestSpec | None = None
    holdout: float = 0.0
    separator: str = ";"
    classes: list[str] | None = None
    normalize: bool = True
    scale: float | None = None
    offset: float | None = None

    def __post_init__(self) -> None:
        where = f"task {self.name!r}"
        if not self.name or not self.name.replace("_", "").replace("-", "").isalnum():
            raise TrainConfigError(f"task name {self.name!r} must be non-empty letters, digits, '_' or '-'")
        check_literals(self, TrainConfigError, where)
        if not self.target:
            raise TrainConfigError(f"{where}: target must name at least one column")
        if len(self.target) > 1 and self.type != "multi_label":
            raise TrainConfigError(f"{where}: several target columns {self.target} need type multi_label")
        if self.weight < 0:
            raise TrainConfigError(f"{where}: weight must be >= 0, got {self.weight}")
        if not 0.0 <= self.holdout < 1.0:
            raise TrainConfigError(f"{where}: holdout must be in [0, 1), got {self.holdout}")
        if self.holdout and self.val_manifest is not None:
            raise TrainConfigError(f"{where}: give val_manifest or holdout, not both")
        if self.scale is not None and self.scale == 0:
            raise TrainConfigError(f"{where}: scale must be non-zero")
        if (self.scale is not None or self.offset is not None) and self.type != "regression":
            raise TrainConfigError(f"{where}: scale/offset apply to regression tasks only")
        if self.manifest.is_shards:
            raise TrainConfigError(
                f"{where}: tasks read CSV/JSONL manifests (target columns), not WebDataset shards"
            )


@dataclass
class SamplingConfig:
    """How tasks of different sizes share the batches.

    ``policy``: ``proportional`` (p_i ~ n_i, every training row equally likely), ``uniform`` (p_i = 1/K), or
    ``temperature`` (p_i ~ n_i^T: T = 1 is proportional, T = 0 uniform). ``batches``: ``mixed`` (each row
    of a batch draws its task) or ``homogeneous`` (each optimiser step draws one task for the whole batch).
    """

    policy: Literal["proportional", "uniform", "temperature"] = "temperature"
    temperature: float = 0.5
    batches: Literal["mixed", "homogeneous"] = "mixed"

    def __post_init__(self) -> None:
        check_literals(self, TrainConfigError, "sampling")
        if not 0.0 <= self.temperature <= 1.0:
            raise TrainConfigError(f"sampling.temperature must be in [0, 1], got {self.temperature}")


@dataclass
class HeadConfig:
    """Per-task heads over the pooled encoder features: linear (``hidden: 0``) or one hidden GELU layer."""

    hidden: int = 0
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.hidden < 0 or not 0.0 <= self.dropout < 1.0:
            raise TrainConfigError(f"head: need hidden >= 0 and 0 <= dropout < 1, got {self}")


@dataclass
class PretrainConfig(LoopConfig):
    """Everything a multi-task pretraining run needs; ``config.yaml`` in the run directory is this, resolved."""

    optim: OptimConfig = field(default_factory=lambda: OptimConfig(weight_decay=0.01))
    batch_size: int = 64  # global: over processes and accumulation steps
    max_steps: int = 1000
    # ---- model
    model: str = "small"  # preset name or model directory; only the audio tower is built
    model_overrides: dict[str, Any] = field(default_factory=dict)  # e.g. {audio: {duration: 2.0}}
    init_audio: str | None = None  # start from an audio-tower directory (a pretrain-audio final/)
    head: HeadConfig = field(default_factory=HeadConfig)
    # ---- tasks and data
    tasks: list[TaskSpec] = field(default_factory=list)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    num_workers: int = 0
    cache_audio: bool = True
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        names = [t.name for t in self.tasks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise TrainConfigError(f"task names must be unique; repeated: {dupes}")
        if self.num_workers < 0:
            raise TrainConfigError(f"num_workers must be >= 0, got {self.num_workers}")

    def require_tasks(self) -> None:
        """Raise unless at least one task is declared."""
        if not self.tasks:
            raise TrainConfigError("tasks is empty: declare at least one task (manifest, target, type)")


def load_pretrain_config(
    path: str | Path | None = None, overrides: list[str] | None = None, extra: dict[str, Any] | None = None
) -> PretrainConfig:
    """Read a pretraining recipe (YAML + ``--set`` overrides + CLI flags) into a ``PretrainConfig``."""
    return read_recipe(
        PretrainConfig,
        path,
        overrides,
        extra,
        example="configs/pretrain-audio/shared-data-7tasks.yaml",
        kind="pretraining config",
    )


def save_pretrain_config(config: PretrainConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    save_config(config, path)
