"""Training data: manifests (CSV/JSONL) and WebDataset shards -> batches of (waveform, tokens).

Determinism (what makes ``--resume`` exact and N processes equal 1):

* The order of a manifest epoch is a permutation drawn from ``seed`` and ``epoch`` only. Optimiser step
  ``s`` of the epoch uses positions ``[s * B, (s + 1) * B)`` of it (``B`` = global batch); that slice is cut
  into ``grad_accum`` micro-batches and each micro-batch into ``world_size`` contiguous parts, one per rank,
  so the ranks' parts, gathered in rank order, are exactly the micro-batch one process would see.
* Every sample's randomness (crop position, augmentation) comes from its own ``torch.Generator`` seeded
  with ``(seed, epoch, index)``, never from a worker's or a process's global RNG.
* The data position is therefore just ``(epoch, step in epoch)``, derived from the global step.

Bad files (``AudioLoadError``: missing, corrupt, silent) are logged once per process and replaced by the
next readable item of the manifest, so batch sizes (and the cross-process gather) stay fixed.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import random
import re
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from openclap.audio.io import AudioLoadError, load_audio
from openclap.audio.windows import fit_to_length, random_crop
from openclap.config import AudioConfig
from openclap.eval.datasets.base import clean_class_name
from openclap.text.tokenizer import TextTokenizer
from openclap_train.augment import augment_wave, change_speed, draw_speed
from openclap_train.config import AugmentConfig, ManifestSpec, TrainConfig

logger = logging.getLogger(__name__)

AUDIO_KEYS = ("flac", "wav", "ogg", "mp3", "opus")  # WebDataset member extensions read as audio


@dataclass(frozen=True)
class Sample:
    """One manifest row: an absolute audio path, its caption and (optional) label.

    Training extras (see ``ManifestSpec``): ``source`` is the manifest the row came from (labels are
    compared within one manifest), ``pool`` the key of its caption pool, ``extras`` its filled-in extra
    captions, drawn with probability ``extra_prob``; ``augment`` its manifest's augmentation when that
    overrides the run's (``ManifestSpec.augment``), else None; ``background`` whether it may be mixed into
    other clips as background noise (``ManifestSpec.background``).
    """

    path: str
    caption: str
    label: str | None = None
    source: str = ""
    pool: str | None = None
    extras: tuple[str, ...] = ()
    extra_prob: float = 0.0
    augment: AugmentConfig | None = None
    background: bool = True


def display_value(value: Any) -> str:
    """A column value as prompts write class names: underscores to spaces, lower case (``sea_waves`` ->
    ``sea waves``), the same cleaning the zero-shot evaluation applies to labels."""
    return clean_class_name(str(value))


_FIELD = re.compile(r"\{([^{}]*)\}")


def fill_columns(template: str, values: dict[str, str]) -> str:
    """``template`` with each ``{column}`` replaced by that column's value: plain substitution, never
    ``str.format`` (a recipe's ``{label.__class__}`` or ``{label:>99999999}`` would run); a field that
    is not a column name raises ``ValueError``."""

    def one(m: re.Match) -> str:
        if m.group(1) not in values:
            raise ValueError(f"{{{m.group(1)}}} is not a column")
        return values[m.group(1)]

    if "{" in _FIELD.sub("", template) or "}" in _FIELD.sub("", template):
        raise ValueError("unpaired brace")
    return _FIELD.sub(one, template)


def _extra_captions(spec: ManifestSpec, row: dict[str, Any], where: str) -> tuple[str, ...]:
    values = {k: display_value(v) for k, v in row.items() if k is not None}
    out = []
    for template in spec.extra_captions:
        try:
            out.append(fill_columns(template, values))
        except ValueError as exc:
            raise ValueError(
                f"{where}: extra caption {template!r} cannot be filled from the columns "
                f"{sorted(values)} ({exc}); name columns as {{label}}"
            ) from exc
    return tuple(out)


def _read_rows(path: Path) -> list[dict[str, Any]]:
    if path.suffix.lower() in (".jsonl", ".json"):
        rows = []
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise ValueError(
                            f"{path}:{n}: not valid JSON ({exc}); a JSONL manifest has one object per line"
                        ) from exc
        return rows
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def read_manifest(spec: ManifestSpec | str) -> list[Sample]:
    """Rows of a CSV/JSONL manifest after the spec's filters; paths resolved against the manifest's folder."""
    if isinstance(spec, str):
        spec = ManifestSpec(path=spec)
    path = Path(spec.path)
    if not path.is_file():
        raise FileNotFoundError(
            f"manifest {path} not found; give a CSV or JSONL file with path and caption columns"
        )
    rows = _read_rows(path)
    if rows and "path" not in rows[0]:
        raise ValueError(f"manifest {path} has no 'path' column (columns: {sorted(rows[0])})")
    out: list[Sample] = []
    for n, row in enumerate(rows):
        if spec.split is not None and row.get("split") != spec.split:
            continue
        if any(str(row.get(col)) not in set(map(str, vals)) for col, vals in spec.include.items()):
            continue
        if any(str(row.get(col)) in set(map(str, vals)) for col, vals in spec.exclude.items()):
            continue
        caption, label = row.get("caption") or None, row.get("label") or None
        if caption is None and label is None:
            raise ValueError(f"manifest {path}, row {n + 1}: needs a caption or a label")
        audio = Path(row["path"])
        if not audio.is_absolute():
            audio = path.parent / audio
        pool = None
        if spec.caption_pool is not None:
            if spec.caption_pool not in row:
                raise ValueError(
                    f"manifest {path}: caption_pool column {spec.caption_pool!r} is missing "
                    f"(columns: {sorted(k for k in row if k is not None)})"
                )
            pool = f"{path}|{spec.caption_pool}={row[spec.caption_pool]}"
        extras = _extra_captions(spec, row, f"manifest {path}, row {n + 1}") if spec.extra_captions else ()
        out.append(
            Sample(
                str(audio),
                caption if caption is not None else str(label),
                label,
                str(path),
                pool,
                extras,
                spec.extra_caption_prob,
            )
        )
    if spec.max_items is not None:
        out = out[: spec.max_items]
    out = out * spec.repeat
    if not out:
        raise ValueError(
            f"manifest {path} has no rows left after the filters (split={spec.split!r}, "
            f"include={spec.include}, exclude={spec.exclude})"
        )
    return out


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for one sample's generator, from the run seed, the epoch and the sample index."""
    digest = hashlib.sha256(f"openclap:{seed}:{epoch}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def read_train_manifests(config: TrainConfig) -> list[Sample]:
    """Every training row of ``config``'s manifests; rows of a manifest with ``augment`` overrides carry
    their merged augmentation (``TrainConfig.manifest_augment``), rows of a manifest with
    ``background: false`` are marked so."""
    samples: list[Sample] = []
    for spec in config.train_manifest:
        rows = read_manifest(spec)
        if spec.augment:
            augment = config.manifest_augment(spec)
            rows = [replace(s, augment=augment) for s in rows]
        if not spec.background:
            rows = [replace(s, background=False) for s in rows]
        samples += rows
    return samples


# ---------------------------------------------------------------------------------- manifest data
def speed_crop(
    wave: np.ndarray, audio: AudioConfig, generator: torch.Generator, speed: float = 1.0
) -> torch.Tensor:
    """A random training window of ``wave``; at ``speed != 1`` a window of ``speed x`` the length, played
    ``speed`` times as fast (``openclap_train.augment.change_speed``) and fitted to the window."""
    if speed == 1.0:
        return random_crop(torch.from_numpy(wave), audio.num_samples, generator, audio.pad_mode)
    crop = random_crop(torch.from_numpy(wave), round(audio.num_samples * speed), generator, audio.pad_mode)
    return fit_to_length(change_speed(crop, audio.sample_rate, speed), audio.num_samples, "zero")


class ManifestDataset(Dataset):
    """Map-style dataset indexed by ``(epoch, index)``: a random crop (+ augmentation) and a caption."""

    def __init__(
        self,
        samples: Sequence[Sample],
        audio: AudioConfig,
        seed: int,
        augment: AugmentConfig | None = None,
        cache: bool = True,
    ) -> None:
        if not samples:
            raise ValueError("ManifestDataset got no samples")
        self.samples = list(samples)
        self.audio = audio
        self.seed = seed
        self.augment = augment or AugmentConfig()
        self.cache: dict[int, np.ndarray] | None = {} if cache else None
        self._bad: set[int] = set()
        # caption pools (captions of all rows sharing a column value) and label groups (for positives)
        self.pools: dict[str, list[str]] = {}
        for s in self.samples:
            if s.pool is not None:
                self.pools.setdefault(s.pool, []).append(s.caption)
        keys = sorted({(s.source, s.label) for s in self.samples if s.label is not None})
        ids = {k: i for i, k in enumerate(keys)}
        # a row without a label is its own group: -(index + 1), never equal to another row's id
        self.groups = [
            ids[(s.source, s.label)] if s.label is not None else -(i + 1) for i, s in enumerate(self.samples)
        ]
        # rows that may be mixed into other clips as background noise (all, unless a manifest opts out)
        self.backgrounds = [i for i, s in enumerate(self.samples) if s.background]
        noisy = any(
            (s.augment if s.augment is not None else self.augment).noise_prob > 0 for s in self.samples
        )
        if noisy and not self.backgrounds:
            raise ValueError(
                "augment.noise_prob > 0 but every training manifest says background: false; "
                "let at least one manifest be a background source"
            )

    def __len__(self) -> int:
        return len(self.samples)

    def _wave(self, index: int) -> np.ndarray:
        if self.cache is not None and index in self.cache:
            return self.cache[index]
        wave = load_audio(self.samples[index].path, self.audio.sample_rate)
        if self.cache is not None:
            self.cache[index] = wave
        return wave

    def _readable(self, index: int, among: Sequence[int] | None = None) -> tuple[int, np.ndarray]:
        """The first readable item at or after position ``index`` (cyclically) of ``among`` (default: every
        item), as (item index, waveform); bad files logged once."""
        order = range(len(self.samples)) if among is None else among
        n = len(order)
        for k in range(n):
            j = order[(index + k) % n]
            if j in self._bad:
                continue
            try:
                return j, self._wave(j)
            except AudioLoadError as exc:
                self._bad.add(j)
                logger.warning("skipping unreadable training file (logged once): %s", exc)
        where = "training manifests" if among is None else "background manifests (background: true)"
        raise RuntimeError(f"no readable audio file in the {where}; check the paths")

    def _crop(self, wave: np.ndarray, generator: torch.Generator, speed: float = 1.0) -> torch.Tensor:
        return speed_crop(wave, self.audio, generator, speed)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        epoch, index = key
        generator = torch.Generator().manual_seed(sample_seed(self.seed, epoch, index))
        j, wave = self._readable(index)
        sample = self.samples[j]
        augment = sample.augment if sample.augment is not None else self.augment
        crop = self._crop(wave, generator, draw_speed(augment, generator))
        caption = sample.caption
        if sample.pool is not None:  # generator draws only when the extra is on: default runs are unchanged
            pool = self.pools[sample.pool]
            caption = pool[int(torch.randint(0, len(pool), (), generator=generator))]
        if sample.extra_prob > 0 and float(torch.rand((), generator=generator)) < sample.extra_prob:
            caption = sample.extras[int(torch.randint(0, len(sample.extras), (), generator=generator))]
        if augment.enabled:
            other = None
            if augment.mix_prob > 0 and float(torch.rand((), generator=generator)) < augment.mix_prob:
                k, other_wave = self._readable(
                    int(torch.randint(0, len(self.samples), (), generator=generator))
                )
                other = self._crop(other_wave, generator)
                if augment.mix_join:
                    caption = caption + augment.mix_join + self.samples[k].caption
            noise = None  # background: a crop of a background clip, mixed at a random SNR by augment_wave
            if augment.noise_prob > 0 and float(torch.rand((), generator=generator)) < augment.noise_prob:
                _, noise_wave = self._readable(
                    int(torch.randint(0, len(self.backgrounds), (), generator=generator)), self.backgrounds
                )
                noise = self._crop(noise_wave, generator)
            crop = augment_wave(crop, augment, generator, other, rate=self.audio.sample_rate, noise=noise)
        return {"waveform": crop, "caption": caption, "index": j, "group": self.groups[j]}


class EpochBatchSampler:
    """Yields this rank's micro-batches of ``(epoch, index)`` keys, from global step ``start_step`` on.

    Infinite (epoch after epoch); ``steps_per_epoch = num_items // batch_size`` (incomplete batches are
    dropped so that every rank gets the same number of samples).
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        grad_accum: int = 1,
        start_step: int = 0,
    ) -> None:
        if batch_size % (world_size * grad_accum):
            raise ValueError(
                f"batch_size {batch_size} must be divisible by world_size * grad_accum = {world_size * grad_accum}"
            )
        if num_items < batch_size:
            raise ValueError(f"the training set has {num_items} items, fewer than batch_size {batch_size}")
        self.num_items, self.batch_size, self.seed = num_items, batch_size, seed
        self.rank, self.world_size, self.grad_accum = rank, world_size, grad_accum
        self.start_step = start_step
        self.micro = batch_size // (world_size * grad_accum)  # per rank, per micro-batch

    @property
    def steps_per_epoch(self) -> int:
        return self.num_items // self.batch_size

    def permutation(self, epoch: int) -> list[int]:
        """The epoch's item order, from ``seed`` and ``epoch`` only."""
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return torch.randperm(self.num_items, generator=g).tolist()

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch, step = divmod(self.start_step, self.steps_per_epoch)
        while True:
            order = self.permutation(epoch)
            for s in range(step, self.steps_per_epoch):
                batch = order[s * self.batch_size : (s + 1) * self.batch_size]
                chunk = self.batch_size // self.grad_accum  # one micro-batch, all ranks
                for a in range(self.grad_accum):
                    part = batch[a * chunk : (a + 1) * chunk][
                        self.rank * self.micro : (self.rank + 1) * self.micro
                    ]
                    yield [(epoch, i) for i in part]
            epoch, step = epoch + 1, 0


class Collator:
    """Stack waveforms and tokenise captions (runs inside the DataLoader workers)."""

    def __init__(self, tokenizer: TextTokenizer) -> None:
        self.tokenizer = tokenizer

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        tokens = self.tokenizer([it["caption"] for it in items])
        return {
            "waveform": torch.stack([it["waveform"] for it in items]),  # (B, N)
            "input_ids": tokens["input_ids"],  # (B, L)
            "attention_mask": tokens["attention_mask"],
            "captions": [it["caption"] for it in items],
            "index": torch.tensor([it.get("index", -1) for it in items]),
            "keys": [it.get("key", "") for it in items],
            # label group of each item (manifest data); shards have none: -1
            "group": torch.tensor([it.get("group", -1) for it in items], dtype=torch.long),
        }


def _seed_worker(worker_id: int) -> None:
    # sample randomness never uses the global RNGs, but seed them anyway for user code
    info = get_worker_info()
    seed = info.seed % (1 << 32) if info is not None else worker_id
    np.random.seed(seed)
    random.seed(seed)


def manifest_loader(
    dataset: ManifestDataset, sampler: EpochBatchSampler, tokenizer: TextTokenizer, num_workers: int
) -> DataLoader:
    """An endless DataLoader of this rank's micro-batches (workers persist, so their caches do too)."""
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=Collator(tokenizer),
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        worker_init_fn=_seed_worker,
        prefetch_factor=2 if num_workers > 0 else None,
    )


# ---------------------------------------------------------------------------------------- shards
def expand_shards(pattern: str) -> list[str]:
    """Shard paths from a pattern with brace ranges (``a-{000..009}.tar``) or a single file."""
    import braceexpand  # installed with webdataset

    urls = list(braceexpand.braceexpand(pattern))
    missing = [u for u in urls if not Path(u).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} shard(s) of {pattern!r} not found, e.g. {missing[0]}; "
            "pack a manifest with scripts/make_shards.py"
        )
    return urls


def decode_audio_bytes(data: bytes, sample_rate: int, name: str) -> np.ndarray:
    """Decode an audio file held in memory to mono float32 at ``sample_rate``."""
    import soundfile as sf

    try:
        wave, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types for corrupt data
        raise AudioLoadError(f"cannot decode {name}: {exc}", path=name) from exc
    return load_audio(wave.T, sample_rate, source_rate=int(rate))


class ShardStream(IterableDataset):
    """Endless stream of micro-batches from WebDataset shards, split by rank and worker.

    Each epoch shuffles the shard list with ``(seed, epoch)``; global worker ``g = rank * workers + w``
    reads shards ``g, g + G, ...`` (``G`` = all workers of all ranks), so no sample is read twice in an
    epoch. A sample's crop uses a generator seeded from ``(seed, epoch, crc32(key))``. The stream is
    deterministic given (rank, worker count), so resuming skips ``skip_batches`` raw batches without
    decoding audio.
    """

    def __init__(
        self,
        urls: Sequence[str],
        audio: AudioConfig,
        tokenizer: TextTokenizer,
        micro_batch: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        skip_batches: int = 0,
        shuffle_buffer: int = 0,
        augment: AugmentConfig | None = None,
    ) -> None:
        super().__init__()
        self.urls, self.audio, self.collate = list(urls), audio, Collator(tokenizer)
        self.micro_batch, self.seed, self.rank, self.world_size = micro_batch, seed, rank, world_size
        self.num_workers = max(1, num_workers)
        self.skip_batches, self.shuffle_buffer = skip_batches, shuffle_buffer
        self.augment = augment or AugmentConfig()
        if self.augment.noise_prob > 0 or self.augment.mix_prob > 0:
            raise ValueError(
                "augment.noise_prob and augment.mix_prob need random access to other clips, which "
                "WebDataset shards do not give; use manifests or set them to 0"
            )
        total = world_size * self.num_workers
        if len(self.urls) < total:
            raise ValueError(
                f"{len(self.urls)} shard(s) for {total} readers (processes x workers); "
                "pack more shards (make_shards.py --shard-size) or use fewer workers"
            )
        self._bad_logged: set[str] = set()

    def _raw(self, worker: int) -> Iterator[tuple[int, dict[str, Any]]]:
        import webdataset as wds

        g, total = self.rank * self.num_workers + worker, self.world_size * self.num_workers
        epoch = 0
        while True:
            order = list(self.urls)
            random.Random(self.seed * 100_003 + epoch).shuffle(order)
            mine = order[g::total]
            # the split by rank and worker is done above: webdataset must not split again
            stream = wds.WebDataset(
                mine, shardshuffle=False, empty_check=False, nodesplitter=None, workersplitter=None
            )
            count = 0
            if self.shuffle_buffer > 1:
                rng, buf = random.Random(f"{self.seed}:{epoch}:{g}"), []
                for sample in stream:
                    count += 1
                    buf.append(sample)
                    if len(buf) >= self.shuffle_buffer:
                        yield epoch, buf.pop(rng.randrange(len(buf)))
                while buf:
                    yield epoch, buf.pop(rng.randrange(len(buf)))
            else:
                for sample in stream:
                    count += 1
                    yield epoch, sample
            if count == 0:
                raise RuntimeError(
                    f"reader {g} of {total} got no samples from shards {mine}; are they empty?"
                )
            epoch += 1

    def _decode(self, epoch: int, sample: dict[str, Any]) -> dict[str, Any] | None:
        key = sample["__key__"]
        ext = next((e for e in AUDIO_KEYS if e in sample), None)
        caption_raw = sample.get("txt")
        if ext is None or caption_raw is None:
            if key not in self._bad_logged:
                self._bad_logged.add(key)
                logger.warning(
                    "shard sample %s lacks audio (%s) or txt; skipped (logged once)", key, AUDIO_KEYS
                )
            return None
        try:
            wave = decode_audio_bytes(
                sample[ext], self.audio.sample_rate, f"{sample.get('__url__')}:{key}.{ext}"
            )
        except AudioLoadError as exc:
            if key not in self._bad_logged:
                self._bad_logged.add(key)
                logger.warning("skipping unreadable shard sample (logged once): %s", exc)
            return None
        g = torch.Generator().manual_seed(sample_seed(self.seed, epoch, zlib.crc32(key.encode())))
        crop = speed_crop(wave, self.audio, g, draw_speed(self.augment, g))
        if self.augment.enabled:
            crop = augment_wave(crop, self.augment, g, rate=self.audio.sample_rate)
        caption = caption_raw.decode("utf-8") if isinstance(caption_raw, bytes) else str(caption_raw)
        return {"waveform": crop, "caption": caption.strip(), "index": -1, "key": key, "epoch": epoch}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        # DataLoader takes batches from workers round-robin: batch i came from worker i % num_workers
        skip = sum(1 for i in range(self.skip_batches) if i % self.num_workers == worker)
        raw = self._raw(worker)
        batch: list[dict[str, Any]] = []
        pending_raw = 0
        for epoch, sample in raw:
            if skip:  # fast-forward without decoding audio: count raw samples that decode cleanly later
                pending_raw += 1
                if pending_raw == self.micro_batch:
                    skip, pending_raw = skip - 1, 0
                continue
            item = self._decode(epoch, sample)
            if item is not None:
                batch.append(item)
            if len(batch) == self.micro_batch:
                yield self.collate(batch)
                batch = []


def shard_loader(stream: ShardStream, num_workers: int) -> DataLoader:
    """DataLoader over a ``ShardStream`` (which batches itself)."""
    return DataLoader(
        stream,
        batch_size=None,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        worker_init_fn=_seed_worker,
    )


# ------------------------------------------------------------------------------------ evaluation
@dataclass
class EvalSet:
    """A labelled/captioned validation set, decoded once."""

    name: str
    waves: list[np.ndarray]
    captions: list[str]
    labels: list[str | None]
    template: str | None = None


def load_eval_set(spec: ManifestSpec, sample_rate: int) -> EvalSet:
    """Decode a validation manifest (bad files are logged and left out)."""
    waves, captions, labels = [], [], []
    for s in read_manifest(spec):
        try:
            waves.append(load_audio(s.path, sample_rate))
        except AudioLoadError as exc:
            logger.warning("validation file left out: %s", exc)
            continue
        captions.append(s.caption)
        labels.append(s.label)
    if not waves:
        raise ValueError(f"validation manifest {spec.path} has no readable audio")
    return EvalSet(spec.display_name, waves, captions, labels, spec.template)
