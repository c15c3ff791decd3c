"""Typed training configuration: a dataclass read from YAML, unknown keys are errors, ``--set`` overrides.

A recipe (``configs/*.yaml``) looks like::

    model: small                       # preset name or model directory
    tokenizer: train                   # train a byte-level BPE on the captions (or a directory, or null)
    train_manifest:
      - ../shared/data/fsdd/manifest.csv               # a plain path: every row
      - {path: ../shared/data/esc10/manifest.csv, split: train}
    batch_size: 64                     # global, over all processes and accumulation steps
    lr: 1.0e-3
    max_steps: 2000

Relative paths in a recipe are relative to the current directory. ``--set key=value`` (dotted keys for
nested values, e.g. ``augment.gain_db=6``) parses the value as YAML (``1e-3``, ``true``, ``[a, b]``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from openclap.builder import build as build_dataclass
from openclap.builder import check_literals
from openclap.errors import ConfigError


class TrainConfigError(ConfigError):
    """A training configuration is invalid; the message names the key and the allowed values."""


@dataclass
class ManifestSpec:
    """One data source: a CSV/JSONL manifest (with optional row filters) or WebDataset shards.

    ``path``: a manifest file, or a shard pattern ending in ``.tar`` (brace expansion allowed, e.g.
    ``shards/train-{000000..000009}.tar``). ``split`` keeps rows whose ``split`` column equals it;
    ``include``/``exclude`` keep/drop rows whose column value is (not) in the given list, e.g.
    ``exclude: {source_id: [fsdd:theo]}``. ``name`` labels validation metrics (default: the folder name).
    ``template`` is the zero-shot prompt for this set (default: the run's ``zeroshot_template``).

    Training-only extras (all off by default):

    * ``repeat``: list the (filtered) rows this many times per epoch, to up-weight a small set; each copy
      is a separate item (own crop, own augmentation).
    * ``caption_pool``: a column name; each time a row is drawn, its caption is replaced by one drawn
      uniformly from the captions of this manifest's rows with the same value in that column (e.g.
      ``label``: any caption written for the same class), from the sample's own generator.
    * ``extra_captions`` / ``extra_caption_prob``: caption templates filled from the row's columns (e.g.
      ``"{label}"``, ``"a note played on a {family} instrument"``); with probability ``extra_caption_prob``
      one of them (uniformly) is used instead of the (pooled) caption.
    * ``augment``: overrides of the run's ``augment`` for this manifest's rows, with ``AugmentConfig``'s
      keys (e.g. ``{speed_prob: 0, eq_prob: 0, reverb_prob: 0}`` keeps the timbre-changing transforms off
      instrument notes whose timbre is the label); ``TrainConfig.manifest_augment`` merges them.
    * ``background``: whether this manifest's rows may be drawn as the background noise of other clips
      (``augment.noise_prob``); ``false`` keeps, e.g., spoken digits or instrument notes out of the
      backgrounds so that only environmental sounds are mixed in.
    """

    path: str
    split: str | None = None
    include: dict[str, list[str]] = field(default_factory=dict)
    exclude: dict[str, list[str]] = field(default_factory=dict)
    name: str | None = None
    template: str | None = None
    max_items: int | None = None
    repeat: int = 1
    caption_pool: str | None = None
    extra_captions: list[str] = field(default_factory=list)
    extra_caption_prob: float = 0.0
    augment: dict[str, Any] = field(default_factory=dict)
    background: bool = True

    @classmethod
    def from_string(cls, path: str) -> ManifestSpec:
        """A manifest given by its path alone (every row)."""
        return cls(path=path)

    def __post_init__(self) -> None:
        if self.repeat < 1 or not 0 <= self.extra_caption_prob <= 1:
            raise TrainConfigError(
                f"manifest {self.path}: need repeat >= 1 and 0 <= extra_caption_prob <= 1, "
                f"got repeat={self.repeat}, extra_caption_prob={self.extra_caption_prob}"
            )
        if self.template is not None and self.template.count("{}") != 1:
            raise TrainConfigError(
                f"manifest {self.path}: template needs '{{}}' exactly once (where the label goes), "
                f"got {self.template!r}"
            )
        if self.extra_caption_prob > 0 and not self.extra_captions:
            raise TrainConfigError(
                f"manifest {self.path}: extra_caption_prob > 0 needs extra_captions "
                "(templates such as '{label}')"
            )

    @property
    def uses_caption_extras(self) -> bool:
        return self.caption_pool is not None or self.extra_caption_prob > 0

    @property
    def is_shards(self) -> bool:
        return self.path.endswith(".tar") or ".tar}" in self.path or self.path.endswith(".tar]")

    @property
    def display_name(self) -> str:
        return self.name or Path(self.path).parent.name or Path(self.path).stem


@dataclass
class AugmentConfig:
    """Waveform augmentation (``openclap_train.augment``), every parameter drawn from each sample's own
    generator (so resume stays exact). Everything is off by default; a transform whose probability is 0
    draws nothing, so turning one on leaves what the others draw unchanged."""

    gain_db: float = 0.0  # random gain, uniform in [-gain_db, +gain_db] dB
    time_shift: float = 0.0  # circular shift by up to this fraction of the window
    mix_prob: float = 0.0  # probability of mixing in a second random clip
    mix_join: str = " and "  # captions of mixed clips are joined with this; "" keeps the first caption only
    # speed perturbation (pitch and tempo together): plays factor x as fast, factor uniform in speed_range
    speed_prob: float = 0.0
    speed_range: tuple[float, float] = (0.9, 1.1)
    # background noise: a random crop of another training clip added at an SNR (dB) uniform in noise_snr_db;
    # the caption is kept (the clip is still what it was)
    noise_prob: float = 0.0
    noise_snr_db: tuple[float, float] = (5.0, 30.0)
    # synthetic room: decaying-noise impulse response, RT60 (s) and direct-to-reverberant ratio (dB) uniform
    reverb_prob: float = 0.0
    reverb_rt60: tuple[float, float] = (0.2, 1.0)
    reverb_drr_db: tuple[float, float] = (-3.0, 10.0)
    # microphone/channel colouring: eq_bands log-spaced bands, each gain uniform in [-eq_db, eq_db]
    eq_prob: float = 0.0
    eq_db: float = 6.0
    eq_bands: int = 6
    # band-limiting: low-pass cut-off and high-pass cut-off (Hz) uniform in the ranges
    bandlimit_prob: float = 0.0
    lowpass_hz: tuple[float, float] = (3000.0, 7500.0)
    highpass_hz: tuple[float, float] = (0.0, 300.0)
    # codec-like degradation: half the time mu-law with mulaw_bits, else resampled down to a rate (Hz)
    # uniform in codec_rate_hz and back up
    codec_prob: float = 0.0
    mulaw_bits: int = 8
    codec_rate_hz: tuple[float, float] = (6000.0, 12000.0)
    # SpecAugment-style masks, applied to the waveform: freq_masks bands, each up to freq_mask of the mel
    # span 0..Nyquist, removed; time_masks spans, each up to time_mask of the window, silenced
    freq_masks: int = 0
    freq_mask: float = 0.1
    time_masks: int = 0
    time_mask: float = 0.1

    def __post_init__(self) -> None:
        if self.gain_db < 0 or not 0 <= self.time_shift <= 1 or not 0 <= self.mix_prob <= 1:
            raise TrainConfigError(
                f"augment: need gain_db >= 0, 0 <= time_shift <= 1, 0 <= mix_prob <= 1; got {self}"
            )
        for key in (
            "speed_prob",
            "noise_prob",
            "reverb_prob",
            "eq_prob",
            "bandlimit_prob",
            "codec_prob",
            "freq_mask",
            "time_mask",
        ):
            if not 0 <= getattr(self, key) <= 1:
                raise TrainConfigError(f"augment.{key} must be in [0, 1], got {getattr(self, key)}")
        for key, low in (
            ("speed_range", 1e-3),
            ("noise_snr_db", -math.inf),
            ("reverb_rt60", 1e-3),
            ("reverb_drr_db", -math.inf),
            ("lowpass_hz", 1.0),
            ("highpass_hz", 0.0),
            ("codec_rate_hz", 1000.0),
        ):
            a, b = getattr(self, key)
            if not low <= a <= b:
                raise TrainConfigError(
                    f"augment.{key} must be [low, high] with {low} <= low <= high, got {[a, b]}"
                )
        if self.eq_db < 0 or self.eq_bands < 2 or not 2 <= self.mulaw_bits <= 16:
            raise TrainConfigError(
                f"augment: need eq_db >= 0, eq_bands >= 2, 2 <= mulaw_bits <= 16; got "
                f"eq_db={self.eq_db}, eq_bands={self.eq_bands}, mulaw_bits={self.mulaw_bits}"
            )
        if self.freq_masks < 0 or self.time_masks < 0:
            raise TrainConfigError(
                f"augment: freq_masks and time_masks must be >= 0, got {self.freq_masks}, {self.time_masks}"
            )

    @property
    def enabled(self) -> bool:
        return (
            self.gain_db > 0
            or self.time_shift > 0
            or self.mix_prob > 0
            or self.speed_prob > 0
            or self.noise_prob > 0
            or self.reverb_prob > 0
            or self.eq_prob > 0
            or self.bandlimit_prob > 0
            or self.codec_prob > 0
            or self.freq_masks > 0
            or self.time_masks > 0
        )


@dataclass
class OptimConfig:
    """The optimiser and its learning-rate schedule (``optim:`` in every recipe: CLAP, pretrain-audio, captioning)."""

    optimizer: Literal["adamw", "adam"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.0  # matrices and convolutions only (CLIP's rule: ndim >= 2, no norms)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    warmup_steps: int = 0  # linear warmup from lr / warmup_steps
    schedule: Literal["cosine", "plateau", "constant"] = "cosine"
    min_lr_ratio: float = 0.0  # cosine floor as a fraction of lr
    plateau_patience: int = 3  # evaluations without improvement of the windowed train loss
    plateau_factor: float = 0.1
    grad_clip: float | None = None  # max global gradient norm (null: no clipping)

    def __post_init__(self) -> None:
        check_literals(self, TrainConfigError, "optim")
        checks = [
            (self.lr > 0, f"optim.lr must be positive, got {self.lr}"),
            (self.weight_decay >= 0, f"optim.weight_decay must be >= 0, got {self.weight_decay}"),
            (self.warmup_steps >= 0, f"optim.warmup_steps must be >= 0, got {self.warmup_steps}"),
            (0 <= self.min_lr_ratio <= 1, f"optim.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}"),
            (
                self.grad_clip is None or self.grad_clip > 0,
                f"optim.grad_clip must be positive or null, got {self.grad_clip}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise TrainConfigError(message)


@dataclass
class LoopConfig:
    """What the training loop (``openclap_train.engine``) reads, the same keys in every task's recipe."""

    optim: OptimConfig = field(default_factory=OptimConfig)
    batch_size: int = 32  # global: summed over processes and accumulation steps
    grad_accum: int = 1
    max_steps: int | None = None
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    # BatchNorm layers (HTSAT's bn0, CNN14): "train" = batch statistics; "frozen" = running statistics,
    # not updated (affine parameters still learn; makes N processes equal 1); "sync" = SyncBatchNorm.
    batchnorm: Literal["train", "frozen", "sync"] = "train"
    device: str = "auto"  # auto: cuda:<local_rank> when available, else cpu
    num_threads: int | None = None  # torch intra-op threads per process (1 helps on busy, shared CPUs)
    seed: int = 0
    log_every: int = 10
    eval_every: int = 0  # 0: only at the end
    save_every: int = 100
    keep_checkpoints: int = 3
    eval_batch_size: int = 32

    def __post_init__(self) -> None:
        check_literals(self, TrainConfigError)
        checks = [
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.grad_accum >= 1, f"grad_accum must be >= 1, got {self.grad_accum}"),
            (self.max_steps is None or self.max_steps >= 1, f"max_steps must be >= 1, got {self.max_steps}"),
            (self.keep_checkpoints >= 1, f"keep_checkpoints must be >= 1, got {self.keep_checkpoints}"),
            (
                self.log_every >= 1 and self.save_every >= 1 and self.eval_every >= 0,
                "log_every and save_every must be >= 1, eval_every >= 0",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise TrainConfigError(message)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (YAML/JSON serialisable)."""
        return plain_data(dataclasses.asdict(self))


@dataclass
class TrainConfig(LoopConfig):
    """A CLAP training run (``openclap train``); ``config.yaml`` in the run directory is this, resolved."""

    # ---- model
    model: str = "tiny"  # preset name or model directory
    # nested overrides applied to the model config before building, e.g. {projection_dropout: 0.0}
    model_overrides: dict[str, Any] = field(default_factory=dict)
    init: str | None = (
        None  # weights to start from: a model directory or checkpoint file (any openclap format)
    )
    init_text: str | None = None  # a local transformers checkpoint directory for the text tower only
    # audio tower only: an audio-tower directory (audio_tower.safetensors), a model directory or a .safetensors
    # file; its audio_encoder.* / audio_frontend.* tensors are loaded strictly
    init_audio: str | None = None
    # tokenizer: null = the model's own; "train" = byte-level BPE trained on the train captions; or a directory
    tokenizer: str | None = None
    tokenizer_vocab_size: int = 2000
    # ---- data
    train_manifest: list[ManifestSpec] = field(default_factory=list)
    val_manifest: list[ManifestSpec] = field(default_factory=list)
    zeroshot_template: str = "this is the sound of {}"
    num_workers: int = 0
    cache_audio: bool = True  # keep decoded training clips in memory (per worker process)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    shuffle_buffer: int = 0  # WebDataset only: size of the (seeded) shuffle buffer
    # contrastive positives: "index" = only a clip's own caption (InfoNCE, the paper's loss); "label" =
    # also every pair in the batch with the same manifest label (per manifest) or the same caption text
    # (multi-positive InfoNCE: same-class pairs are not pushed apart as false negatives)
    positives: Literal["index", "label"] = "index"
    epochs: int | None = None
    freeze_audio: bool = False
    freeze_text: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        checks = [
            (self.epochs is None or self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.num_workers >= 0, f"num_workers must be >= 0, got {self.num_workers}"),
            (
                self.zeroshot_template.count("{}") == 1,
                (
                    "zeroshot_template needs '{}' exactly once (where the label goes), "
                    f"got {self.zeroshot_template!r}"
                ),
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise TrainConfigError(message)
        for spec in self.train_manifest:  # a wrong key or value fails at load, not at the first batch
            self.manifest_augment(spec)

    def manifest_augment(self, spec: ManifestSpec) -> AugmentConfig:
        """The augmentation for ``spec``'s rows: the run's ``augment`` with the manifest's overrides."""
        if not spec.augment:
            return self.augment
        merged = {**plain_data(dataclasses.asdict(self.augment)), **spec.augment}
        return build(AugmentConfig, merged, f"manifest {spec.path}: augment")

    def require_data(self) -> None:
        """Raise unless a training source and a stopping rule are set."""
        if not self.train_manifest:
            raise TrainConfigError("train_manifest is empty: give at least one manifest or shard pattern")
        if self.max_steps is None and self.epochs is None:
            raise TrainConfigError("set max_steps or epochs (or pass --max-steps N)")


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``update`` merged in, recursively for nested dicts (model_overrides on a preset)."""
    out = dict(base)
    for k, v in update.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def plain_data(value: Any) -> Any:
    """Nested dicts/lists/tuples (e.g. ``dataclasses.asdict`` output) as plain YAML/JSON dicts and lists."""
    if isinstance(value, dict):
        return {k: plain_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_data(v) for v in value]
    return value


# ------------------------------------------------------------------------------------------ parsing
def build(cls: type, data: Any, where: str | None = None) -> Any:
    """Build dataclass ``cls`` from a mapping; unknown keys and wrong types raise ``TrainConfigError``."""
    if isinstance(data, dict) and isinstance(cls, type) and issubclass(cls, LoopConfig):
        moved = sorted(set(data) & {f.name for f in dataclasses.fields(OptimConfig)})
        if moved:  # recipes before the one engine had these at the top level
            raise TrainConfigError(
                f"{where or cls.__name__}: {moved} belong under `optim:` (e.g. "
                f"optim: {{{moved[0]}: ...}} or --set optim.{moved[0]}=...)"
            )
    return build_dataclass(cls, data, where, TrainConfigError)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key=value`` strings (dotted keys, YAML values) to a nested dict, returning a new dict."""
    out = yaml.safe_load(yaml.safe_dump(data))  # deep copy
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise TrainConfigError(f"--set expects key=value, got {item!r}")
        value = yaml.safe_load(raw) if raw.strip() else None
        parts = key.strip().split(".")
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise TrainConfigError(f"--set {item!r}: {part!r} is not a mapping")
            node = child
        node[parts[-1]] = value
    return out


def read_recipe(
    cls: type,
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    extra: dict[str, Any] | None = None,
    example: str = "configs/small-shared-data.yaml",
    kind: str = "training config",
) -> Any:
    """Read a YAML recipe, apply ``--set`` overrides, then ``extra`` (CLI flags), into dataclass ``cls``."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"{kind} {p} not found; pass a YAML file such as {example}")
        loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        if loaded is not None and not isinstance(loaded, dict):
            raise TrainConfigError(
                f"{p}: the top level must be a mapping of keys, got {type(loaded).__name__}"
            )
        data = loaded or {}
    data = apply_overrides(data, overrides or [])
    for key, value in (extra or {}).items():
        if value is not None:
            data[key] = value
    return build(cls, data, where=str(path) if path else cls.__name__)


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None, extra: dict[str, Any] | None = None
) -> TrainConfig:
    """Read a training recipe (YAML + ``--set`` overrides + CLI flags) into a ``TrainConfig``."""
    return read_recipe(TrainConfig, path, overrides, extra)


def save_config(config: Any, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
    tmp.replace(p)
