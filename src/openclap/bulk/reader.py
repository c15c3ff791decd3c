"""Parallel decoding for bulk jobs: files -> pieces of fixed-length windows, in DataLoader workers.

A file is decoded block by block (``openclap.audio.io.iter_audio_blocks``) and cut into the same
windows as ``openclap.audio.windows.split_windows`` would cut the whole waveform (window ``k`` starts
at ``k * hop``; the last one is moved back to end at the clip's end), without ever holding the whole
file: only the current block plus one window of history. An hour-long file thus needs a few MB.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from openclap.audio.io import AudioLoadError, audio_info, iter_audio_blocks
from openclap.audio.windows import WindowSpan, fit_to_length

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WindowPlan:
    """How files are cut into model windows."""

    sample_rate: int  # model rate (Hz)
    num_samples: int  # window length N
    hop_samples: int  # distance between window starts
    pad_mode: str = "repeat"  # how a clip shorter than N is filled
    block_seconds: float = 60.0  # decoding block; bounds memory for long files
    max_piece_windows: int = 16  # windows handed to the main process at a time


@dataclass
class Piece:
    """A run of windows from one file; ``last`` marks the file's final piece (or its error)."""

    index: int  # position of the file in the job's list
    windows: np.ndarray  # (W, N) float32, W may be 0
    spans: list[WindowSpan] = field(default_factory=list)
    last: bool = False
    duration: float = 0.0  # seconds of real audio, set on the last piece
    source_rate: int = 0  # the file's own sample rate
    error: str | None = None


def iter_file_windows(
    path: str | os.PathLike, plan: WindowPlan
) -> Iterator[tuple[np.ndarray, list[WindowSpan]]]:
    """Stream ``(windows (W, N), spans)`` groups of one file; equal to ``split_windows`` on the whole file.

    Raises ``AudioLoadError`` as ``iter_audio_blocks`` does (possibly after some groups were yielded).
    """
    n, hop, rate = plan.num_samples, plan.hop_samples, plan.sample_rate
    if not 0 < hop <= n:
        raise ValueError(f"hop_samples must be in [1, num_samples={n}], got {hop}")
    buf = np.zeros(0, dtype=np.float32)
    buf_start = 0  # absolute sample index of buf[0]
    total = 0  # samples seen so far
    next_k = 0  # index of the next regular window
    last_emitted_start = -1
    out_w: list[np.ndarray] = []
    out_s: list[WindowSpan] = []
    for block in iter_audio_blocks(path, rate, plan.block_seconds):
        buf = np.concatenate([buf, block]) if len(buf) else block
        total += len(block)
        while next_k * hop + n <= total:
            s = next_k * hop
            out_w.append(buf[s - buf_start : s - buf_start + n].copy())
            out_s.append(WindowSpan(s / rate, (s + n) / rate))
            last_emitted_start = s
            next_k += 1
            if len(out_w) >= plan.max_piece_windows:
                yield np.stack(out_w), out_s
                out_w, out_s = [], []
        keep_from = max(0, min(next_k * hop, total - n))  # keep one window of history for the tail window
        if keep_from > buf_start:
            buf = buf[keep_from - buf_start :]
            buf_start = keep_from
    if total == 0:
        return
    if total < n:  # one padded window, as split_windows does (total == n gave its one window above)
        window = fit_to_length(torch.from_numpy(np.ascontiguousarray(buf)), n, plan.pad_mode).numpy()
        out_w.append(window.astype(np.float32, copy=False))
        out_s.append(WindowSpan(0.0, total / rate))
    elif (
        total > n and last_emitted_start != total - n
    ):  # the final window, shifted back to end at the clip's end
        s = total - n
        out_w.append(buf[s - buf_start : s - buf_start + n].copy())
        out_s.append(WindowSpan(s / rate, total / rate))
    if out_w:
        yield np.stack(out_w), out_s


def iter_pieces(index: int, path: str, plan: WindowPlan) -> Iterator[Piece]:
    """Pieces of one file; an unreadable file gives one ``Piece`` with ``error`` set (and no windows)."""
    empty = np.zeros((0, plan.num_samples), dtype=np.float32)
    try:
        source_rate = audio_info(path).sample_rate
        total = 0.0
        pending: Piece | None = None
        for windows, spans in iter_file_windows(path, plan):
            if pending is not None:
                yield pending
            pending = Piece(index, windows, spans, source_rate=source_rate)
            total = max(total, spans[-1].end)
        if pending is None:
            raise AudioLoadError(f"audio file '{path}' gave no samples", path)
        pending.last = True
        pending.duration = total
        yield pending
    except AudioLoadError as exc:
        yield Piece(index, empty, last=True, error=str(exc))


class FileWindowsDataset(IterableDataset):
    """Each worker decodes every ``num_workers``-th file and yields its pieces."""

    def __init__(self, paths: Sequence[str], plan: WindowPlan, indices: Sequence[int] | None = None) -> None:
        self.paths = list(paths)
        self.indices = list(range(len(self.paths))) if indices is None else list(indices)
        self.plan = plan

    def __iter__(self) -> Iterator[Piece]:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        for i in self.indices[worker::workers]:
            yield from iter_pieces(i, self.paths[i], self.plan)


def _identity(piece: Piece) -> Piece:
    return piece


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # decoding needs no intra-op threads; leave the cores to the model


def iter_decoded(
    paths: Sequence[str], plan: WindowPlan, num_workers: int, indices: Sequence[int] | None = None
) -> Iterator[Piece]:
    """Pieces of ``paths`` decoded by ``num_workers`` processes (0: in this process)."""
    dataset = FileWindowsDataset(paths, plan, indices)
    if not dataset.indices:
        return
    if num_workers <= 0:
        yield from dataset
        return
    loader = DataLoader(
        dataset,
        batch_size=None,
        num_workers=num_workers,
        collate_fn=_identity,
        worker_init_fn=_worker_init,
        prefetch_factor=4,
        persistent_workers=False,
    )
    yield from loader
