"""Per-task validation: deterministic windows (as at inference), features averaged per clip, each head scored.

Metrics, keyed ``val/<task>/<metric>``: ``loss`` for every task; ``acc`` (single_label); ``mAP`` (multi_label,
over classes with a positive, via ``openclap.eval.metrics``); ``mae`` in the target's own units and ``r2``
(regression).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from openclap.audio.io import AudioLoadError, load_audio
from openclap.audio.windows import split_windows
from openclap.eval.metrics import mean_average_precision
from openclap_train.multitask.model import MultiTaskAudioModel, task_loss
from openclap_train.multitask.tasks import TaskData

logger = logging.getLogger(__name__)


class ValAudio:
    """Validation clips decoded once (shared by tasks that share files); unreadable ones logged and skipped."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.waves: dict[str, np.ndarray | None] = {}

    def get(self, path: str) -> np.ndarray | None:
        if path not in self.waves:
            try:
                self.waves[path] = load_audio(path, self.sample_rate)
            except AudioLoadError as exc:
                logger.warning("validation file left out: %s", exc)
                self.waves[path] = None
        return self.waves[path]


@torch.inference_mode()
def clip_features(
    model: MultiTaskAudioModel, waves: list[np.ndarray], batch_size: int, device: torch.device
) -> torch.Tensor:
    """(N, width) clip features: the mean over the clip's deterministic windows."""
    audio = model.audio_config
    hop = max(1, round(audio.hop_seconds * audio.sample_rate))
    windows, owners = [], []
    for i, wave in enumerate(waves):
        w, _ = split_windows(
            torch.from_numpy(wave), audio.num_samples, hop, audio.pad_mode, audio.sample_rate
        )
        windows.append(w)
        owners.extend([i] * len(w))
    stacked = torch.cat(windows)
    feats = torch.cat(
        [
            model.features(stacked[s : s + batch_size].to(device)).float().cpu()
            for s in range(0, len(stacked), batch_size)
        ]
    )
    sums = torch.zeros(len(waves), feats.shape[1]).index_add_(0, torch.tensor(owners), feats)
    counts = torch.bincount(torch.tensor(owners), minlength=len(waves)).clamp(min=1).unsqueeze(1)
    return sums / counts


def task_metrics(task: TaskData, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Metrics of one task from head outputs (N, C) and encoded targets."""
    out = {"loss": float(task_loss(task.kind, outputs, targets).mean())}
    if task.kind == "single_label":
        out["acc"] = float((outputs.argmax(dim=1) == targets).float().mean())
    elif task.kind == "multi_label":
        if bool(targets.sum(dim=0).gt(0).any()):
            out["mAP"] = mean_average_precision(outputs.numpy(), targets.numpy())[0]
    else:
        pred, true = outputs.squeeze(-1).double(), targets.double()
        out["mae"] = float((pred - true).abs().mean()) * task.scale
        var = float(((true - true.mean()) ** 2).sum())
        out["r2"] = 1.0 - float(((pred - true) ** 2).sum()) / var if var > 0 else float("nan")
    return out


@torch.inference_mode()
def evaluate_tasks(
    model: MultiTaskAudioModel,
    tasks: list[TaskData],
    audio: ValAudio,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """``val/<task>/<metric>`` for every task that has validation rows (clips shared by tasks embedded once)."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    metrics: dict[str, float] = {}
    try:
        paths = list(dict.fromkeys(p for t in tasks if t.val_targets is not None for p in t.val_paths))
        paths = [p for p in paths if audio.get(p) is not None]
        if not paths:
            return metrics
        feats = clip_features(model, [audio.get(p) for p in paths], batch_size, device)  # (P, width)
        row = {p: i for i, p in enumerate(paths)}
        for task in tasks:
            if task.val_targets is None:
                continue
            keep = [i for i, p in enumerate(task.val_paths) if p in row]
            if not keep:
                continue
            x = feats[[row[task.val_paths[i]] for i in keep]].to(device)
            outputs = model.heads[task.name](x).float().cpu()
            for k, v in task_metrics(task, outputs, task.val_targets[keep]).items():
                metrics[f"val/{task.name}/{k}"] = v
    finally:
        model.train(was_training)
    return metrics
