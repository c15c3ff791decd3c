"""Audio of the tasks' rows: random crops (+ the trainer's augmentation) keyed by ``(task, index, epoch)``.

Decoding, cropping and augmentation are the trainer's (``openclap.audio.io.load_audio``,
``openclap_train.data.speed_crop``, ``openclap_train.augment.augment_wave``); each row's randomness
comes from its own generator seeded with ``(seed, task, epoch, index)``, so resume stays exact. Clips are
cached by path, so tasks that share a manifest share the decoded audio. Unreadable files are logged once
and replaced by the next readable row of the same task.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from openclap.audio.io import AudioLoadError, load_audio
from openclap.config import AudioConfig
from openclap_train.augment import augment_wave, draw_speed
from openclap_train.config import AugmentConfig
from openclap_train.data import _seed_worker, sample_seed, speed_crop
from openclap_train.multitask.sampling import Key, MultiTaskBatchSampler
from openclap_train.multitask.tasks import TaskData

logger = logging.getLogger(__name__)


class MultiTaskDataset(Dataset):
    """Map-style dataset: key ``(task, index, epoch)`` -> ``{waveform, task, index}``."""

    def __init__(
        self,
        tasks: list[TaskData],
        audio: AudioConfig,
        seed: int,
        augment: AugmentConfig | None = None,
        cache: bool = True,
    ) -> None:
        self.paths = [t.paths for t in tasks]
        self.audio, self.seed = audio, seed
        self.augment = augment or AugmentConfig()
        if self.augment.mix_prob > 0 or self.augment.noise_prob > 0:
            raise ValueError(
                "multi-task pretraining does not mix clips (the other clip's targets would be lost): "
                "set augment.mix_prob and augment.noise_prob to 0"
            )
        self.cache: dict[str, np.ndarray] | None = {} if cache else None
        self._bad: set[str] = set()

    def _wave(self, path: str) -> np.ndarray:
        if self.cache is not None and path in self.cache:
            return self.cache[path]
        wave = load_audio(path, self.audio.sample_rate)
        if self.cache is not None:
            self.cache[path] = wave
        return wave

    def _readable(self, task: int, index: int) -> tuple[int, np.ndarray]:
        paths = self.paths[task]
        for k in range(len(paths)):
            j = (index + k) % len(paths)
            if paths[j] in self._bad:
                continue
            try:
                return j, self._wave(paths[j])
            except AudioLoadError as exc:
                self._bad.add(paths[j])
                logger.warning("skipping unreadable training file (logged once): %s", exc)
        raise RuntimeError(
            f"task {task}: no readable audio file among its {len(paths)} rows; check the paths"
        )

    def __getitem__(self, key: Key) -> dict[str, Any]:
        task, index, epoch = key
        g = torch.Generator().manual_seed(sample_seed(self.seed * 1009 + task, epoch, index))
        j, wave = self._readable(task, index)
        crop = speed_crop(wave, self.audio, g, draw_speed(self.augment, g))
        if self.augment.enabled:  # mixing and background clips would blur the targets: refused in __init__
            crop = augment_wave(crop, self.augment, g, rate=self.audio.sample_rate)
        return {"waveform": crop, "task": task, "index": j}


def collate(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack waveforms (B, N); task ids and row indices (B,)."""
    return {
        "waveform": torch.stack([it["waveform"] for it in items]),
        "task": torch.tensor([it["task"] for it in items], dtype=torch.long),
        "index": torch.tensor([it["index"] for it in items], dtype=torch.long),
    }


def multitask_loader(
    dataset: MultiTaskDataset, sampler: MultiTaskBatchSampler, num_workers: int
) -> DataLoader:
    """An endless DataLoader of this rank's micro-batches."""
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        worker_init_fn=_seed_worker,
        prefetch_factor=2 if num_workers > 0 else None,
    )


def batch_targets(
    batch: dict[str, torch.Tensor], tasks: list[TaskData], device: torch.device
) -> list[torch.Tensor]:
    """Per task, the targets of its rows in the batch (in batch order)."""
    out = []
    for t, task in enumerate(tasks):
        rows = batch["index"][batch["task"] == t]
        out.append(task.targets[rows].to(device))
    return out
