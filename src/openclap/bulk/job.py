"""The bulk embedding job: many files -> chunked embeddings on disk, resumable, sharded.

Decoding and resampling run in DataLoader worker processes (``num_workers``); the main process
batches windows from all files into model calls of ``batch_size`` windows, pools them per file
(``pool="mean"|"max"|"none"``) and commits results every ``chunk_files`` files (see
``openclap.bulk.store`` for the layout and the commit protocol).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from openclap.audio.io import is_not_audio
from openclap.bulk.reader import Piece, WindowPlan, iter_decoded
from openclap.bulk.store import ChunkStore, Row, file_key
from openclap.errors import model_fingerprint

logger = logging.getLogger(__name__)

POOLS = ("mean", "max", "none")
MANIFEST_SUFFIXES = (".csv", ".jsonl", ".txt")


@dataclass
class EmbedOptions:
    """Settings of a bulk embedding run."""

    pool: str = "mean"  # "mean" | "max": one row per file; "none": one row per window
    batch_size: int = 16  # windows per model call
    num_workers: int = 2  # decoding processes (0: decode in the main process)
    chunk_files: int = 256  # files per committed chunk
    hop_seconds: float | None = None  # window hop (default: the model's)
    block_seconds: float = 60.0  # decoding block for long files
    shard: tuple[int, int] = (0, 1)  # (i, n): this run embeds the files whose hash % n == i
    progress: bool = False

    def __post_init__(self) -> None:
        if self.pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {self.pool!r}")
        if self.batch_size < 1 or self.chunk_files < 1:
            raise ValueError(
                f"batch_size and chunk_files must be >= 1, got {self.batch_size}, {self.chunk_files}"
            )
        i, n = self.shard
        if not (n >= 1 and 0 <= i < n):
            raise ValueError(f"shard must be i/n with 0 <= i < n, got {i}/{n}")


@dataclass
class EmbedReport:
    """What a run did."""

    total: int = 0  # files in this shard
    skipped: int = 0  # already embedded by an earlier run
    embedded: int = 0
    failed: int = 0  # audio that could not be embedded (corrupt, truncated, silent, ...)
    not_audio: int = 0  # files that are not audio ("not audio", "no audio stream")
    rows: int = 0
    seconds: float = 0.0
    errors: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) of this run's failures
    # (path, reason) of this shard's files that an earlier run recorded as failed (skipped now, still failed)
    earlier_errors: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        """The counting line the commands end with: ``embedded N, failed M, not audio K``."""
        done = f" (already embedded {self.skipped})" if self.skipped else ""
        return f"embedded {self.embedded}{done}, failed {self.failed}, not audio {self.not_audio}"


def count_failure(report: EmbedReport, path: str, reason: str) -> None:
    """Add a file that gave no embedding to ``report``: as "not audio" or as failed, by its reason."""
    if is_not_audio(reason):
        report.not_audio += 1
    else:
        report.failed += 1
    report.errors.append((path, reason))


def parse_shard(text: str) -> tuple[int, int]:
    """'i/n' -> (i, n); 'auto' reads torchrun's RANK and WORLD_SIZE (0/1 when unset)."""
    if text == "auto":
        text = f"{os.environ.get('RANK', '0')}/{os.environ.get('WORLD_SIZE', '1')}"
    try:
        i_s, n_s = text.split("/")
        i, n = int(i_s), int(n_s)
    except ValueError:
        raise ValueError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"--shard i/n needs 0 <= i < n, got {text!r}")
    return i, n


def in_shard(path: str, shard: tuple[int, int]) -> bool:
    """Stable assignment of a path to one of n shards (same on every machine)."""
    i, n = shard
    return n == 1 or zlib.crc32(path.encode("utf-8")) % n == i


def read_manifest_paths(manifest: str | os.PathLike) -> list[str]:
    """Paths of a CSV/JSONL manifest (``path`` column, relative to the manifest's folder) or a .txt list."""
    m = Path(manifest)
    base = m.parent
    paths: list[str] = []
    if m.suffix == ".txt":
        paths = [line.strip() for line in m.read_text().splitlines() if line.strip()]
    elif m.suffix == ".jsonl":
        for n, line in enumerate(m.read_text().splitlines(), 1):
            if line.strip():
                obj = json.loads(line)
                if "path" not in obj:
                    raise ValueError(f"{m}:{n} has no 'path' field; every JSONL line needs one")
                paths.append(obj["path"])
    else:
        with open(m, newline="") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or "path" not in reader.fieldnames:
                raise ValueError(f"manifest {m} has no 'path' column (columns: {reader.fieldnames})")
            paths = [row["path"] for row in reader]
    return [str((base / p).resolve()) if not os.path.isabs(p) else p for p in paths]


def collect_inputs(
    inputs: Sequence[str | os.PathLike], exclude: Sequence[str | os.PathLike] = ()
) -> list[str]:
    """Files, folders (recursive) and manifests -> unique absolute paths, in the order given.

    A folder contributes every file it holds, sorted (the decoders decide what is audio, and report
    what is not: ``find_audio_files``), except those under ``exclude``; a path named twice keeps its
    first place. The order is the caller's (not a sort of the absolute paths), so ``embed_to_arrays``
    rows follow the inputs on every machine, wherever the files live.
    """
    from openclap.pipeline import find_audio_files

    out: list[str] = []
    for item in inputs:
        p = Path(item)
        if p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES:
            out.extend(read_manifest_paths(p))
        elif p.is_dir():
            out.extend(str(f.resolve()) for f in find_audio_files([p], exclude))
        else:
            out.append(str(p.resolve()) if p.exists() else str(p.absolute()))
    return list(dict.fromkeys(out))


def window_plan(pipeline, hop_seconds: float | None, block_seconds: float) -> WindowPlan:
    """The pipeline's windowing policy as a ``WindowPlan``."""
    audio = pipeline.config.audio
    hop = audio.hop_seconds if hop_seconds is None else hop_seconds
    hop_samples = max(1, round(hop * audio.sample_rate))
    if hop_samples > audio.num_samples:
        raise ValueError(
            f"hop_seconds={hop} is longer than the {audio.duration} s window; use at most {audio.duration}"
        )
    return WindowPlan(audio.sample_rate, audio.num_samples, hop_samples, audio.pad_mode, block_seconds)


def job_identity(
    pipeline, options: EmbedOptions, model_name: str | None = None, checkpoint: str | None = None
) -> dict:
    """What must be equal for earlier results in an output directory to be reused (plus where from)."""
    plan = window_plan(pipeline, options.hop_seconds, options.block_seconds)
    # seeded random weights (a preset asked for by name) stay visible in job.json and index.json
    random = {"random_weights": True} if getattr(pipeline, "random_weights", False) else {}
    return {
        "model": model_name or pipeline.config.name,
        "checkpoint": checkpoint,
        "model_id": model_fingerprint(pipeline.model),
        "embed_dim": int(pipeline.config.embed_dim),
        "pool": options.pool,
        "sample_rate": plan.sample_rate,
        "window_seconds": plan.num_samples / plan.sample_rate,
        "hop_seconds": plan.hop_samples / plan.sample_rate,
        **random,
    }


@dataclass
class FileResult:
    """A finished file: its rows and the embedding of each "ok" row."""

    index: int
    rows: list[Row]
    vectors: np.ndarray  # (ok rows, D)


class _Accumulator:
    """Window embeddings of one file as its pieces arrive."""

    def __init__(self, pool: str) -> None:
        self.pool = pool
        self.sum: np.ndarray | None = None
        self.max: np.ndarray | None = None
        self.windows: list[np.ndarray] = []
        self.spans: list = []
        self.pending = 0  # windows queued but not embedded yet
        self.last: Piece | None = None

    def add(self, embeds: np.ndarray) -> None:
        if self.pool == "mean":
            s = embeds.sum(axis=0, dtype=np.float64)
            self.sum = s if self.sum is None else self.sum + s
        elif self.pool == "max":
            m = embeds.max(axis=0)
            self.max = m if self.max is None else np.maximum(self.max, m)
        else:
            self.windows.append(embeds)


def _normalize(v: np.ndarray) -> np.ndarray:
    return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)


def iter_embedded_files(
    pipeline,
    paths: Sequence[str],
    options: EmbedOptions,
    indices: Sequence[int] | None = None,
    keys: dict[int, tuple[int, int]] | None = None,
) -> Iterator[FileResult]:
    """Embed ``paths`` (or the subset ``indices``), yielding each file's result as soon as it is done."""
    plan = window_plan(pipeline, options.hop_seconds, options.block_seconds)
    model, device = pipeline.model, pipeline.device
    accs: dict[int, _Accumulator] = {}
    queue: list[tuple[int, np.ndarray]] = []  # (file index, windows)
    queued = 0

    def run_model() -> list[int]:
        nonlocal queue, queued
        if not queue:
            return []
        windows = torch.from_numpy(np.concatenate([w for _, w in queue]))
        with torch.inference_mode():
            embeds = torch.cat(
                [
                    model.encode_audio(windows[i : i + options.batch_size].to(device, torch.float32))
                    .float()
                    .cpu()
                    for i in range(0, len(windows), options.batch_size)
                ]
            ).numpy()
        offset, touched = 0, []
        for index, w in queue:
            acc = accs[index]
            acc.add(embeds[offset : offset + len(w)])
            acc.pending -= len(w)
            offset += len(w)
            touched.append(index)
        queue, queued = [], 0
        return touched

    def finish(index: int) -> FileResult:
        acc = accs.pop(index)
        piece = acc.last
        path = paths[index]
        size, mtime = keys[index] if keys and index in keys else _safe_key(path)
        if piece.error is not None:
            return FileResult(
                index,
                [Row(path, "error", size=size, mtime_ns=mtime, reason=piece.error)],
                np.zeros((0, int(pipeline.config.embed_dim)), np.float32),
            )
        common = {
            "duration": piece.duration,
            "sample_rate": piece.source_rate,
            "size": size,
            "mtime_ns": mtime,
        }
        if options.pool == "none":
            vecs = np.concatenate(acc.windows).astype(np.float32)
            rows = [
                Row(path, "ok", window=k, start=s.start, end=s.end, **common) for k, s in enumerate(acc.spans)
            ]
            return FileResult(index, rows, vecs)
        pooled = acc.sum if options.pool == "mean" else acc.max
        return FileResult(
            index, [Row(path, "ok", start=0.0, end=piece.duration, **common)], _normalize(pooled)[None]
        )

    def ready(indices_: list[int]) -> Iterator[FileResult]:
        for index in dict.fromkeys(indices_):
            acc = accs.get(index)
            if acc is not None and acc.last is not None and acc.pending == 0:
                yield finish(index)

    for piece in iter_decoded(paths, plan, options.num_workers, indices):
        acc = accs.setdefault(piece.index, _Accumulator(options.pool))
        if len(piece.windows):
            acc.spans.extend(piece.spans)
            acc.pending += len(piece.windows)
            queue.append((piece.index, np.asarray(piece.windows)))
            queued += len(piece.windows)
        if piece.last:
            acc.last = piece
            if acc.pending == 0:
                yield finish(piece.index)
        if queued >= options.batch_size:
            yield from ready(run_model())
    yield from ready(run_model())
    if accs:
        raise RuntimeError(f"internal error: {len(accs)} file(s) were decoded but never finished")


def _safe_key(path: str) -> tuple[int, int]:
    try:
        return file_key(path)
    except OSError:
        return 0, 0


def run_embed_job(
    pipeline,
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    options: EmbedOptions | None = None,
    model_name: str | None = None,
    checkpoint: str | None = None,
) -> EmbedReport:
    """Embed every input file into ``out_dir`` (resumable); returns counts and this run's failures.

    ``model_name``/``checkpoint`` are recorded in job.json so that an index built from the output
    can load the same model again.
    """
    options = options or EmbedOptions()
    store = ChunkStore(out_dir)
    with store.exclusive():  # one writer per directory: see ChunkStore.exclusive
        return _run_embed_job(pipeline, inputs, store, options, model_name, checkpoint)


def _run_embed_job(
    pipeline,
    inputs: Sequence[str | os.PathLike],
    store: ChunkStore,
    options: EmbedOptions,
    model_name: str | None,
    checkpoint: str | None,
) -> EmbedReport:
    """``run_embed_job``'s work, with the output directory's writer lock held."""
    t0 = time.perf_counter()
    out_dir = store.root
    store.check_job(job_identity(pipeline, options, model_name, checkpoint))
    store.clean_partial()
    paths = [p for p in collect_inputs(inputs, exclude=[out_dir]) if in_shard(p, options.shard)]
    done = store.done()
    report = EmbedReport(total=len(paths))
    todo: list[int] = []
    keys: dict[int, tuple[int, int]] = {}
    for i, p in enumerate(paths):
        key = _safe_key(p)
        keys[i] = key
        if done.get(p) == key and key != (0, 0):
            report.skipped += 1
        else:
            todo.append(i)
    if report.skipped:
        logger.info("%d of %d file(s) already embedded in %s: skipped", report.skipped, len(paths), out_dir)
    i, n = options.shard
    tag = f"-s{i}of{n}" if n > 1 else ""
    rows: list[Row] = []
    vecs: list[np.ndarray] = []
    files_in_chunk = 0

    def commit() -> None:
        nonlocal rows, vecs, files_in_chunk
        if rows:
            dim = int(pipeline.config.embed_dim)
            mat = np.concatenate(vecs) if vecs else np.zeros((0, dim), np.float32)
            store.write_chunk(store.new_chunk_name(tag), rows, mat)
        rows, vecs, files_in_chunk = [], [], 0

    bar = tqdm(
        total=len(todo), desc="embedding", unit="file", disable=not options.progress, dynamic_ncols=True
    )
    for result in iter_embedded_files(pipeline, paths, options, todo, keys):
        rows.extend(result.rows)
        if len(result.vectors):
            vecs.append(result.vectors)
        files_in_chunk += 1
        if result.rows[0].status == "error":
            count_failure(report, result.rows[0].path, result.rows[0].reason)
            logger.debug("%s", result.rows[0].reason)  # the caller reports report.errors (once)
        else:
            report.embedded += 1
            report.rows += len(result.rows)
        bar.update(1)
        if files_in_chunk >= options.chunk_files:
            commit()
    commit()
    bar.close()
    store.write_summary()
    redone = set(todo)
    skipped = {p for i, p in enumerate(paths) if i not in redone}
    if skipped:
        errors = store.read_table(with_vectors=False).errors
        report.earlier_errors = [(r.path, r.reason) for r in errors if r.path in skipped]
    report.seconds = time.perf_counter() - t0
    return report


def embed_to_arrays(
    pipeline, inputs: Sequence[str | os.PathLike], options: EmbedOptions | None = None
) -> tuple[np.ndarray, list[Row]]:
    """Embed in memory (no output directory): ``(vectors, rows)`` in input order; failed files are rows."""
    options = options or EmbedOptions()
    paths = [p for p in collect_inputs(inputs) if in_shard(p, options.shard)]
    results = sorted(iter_embedded_files(pipeline, paths, options), key=lambda r: r.index)
    rows = [r for res in results for r in res.rows]
    dim = int(pipeline.config.embed_dim)
    vecs = [res.vectors for res in results if len(res.vectors)]
    return (np.concatenate(vecs) if vecs else np.zeros((0, dim), np.float32)), rows


def save_npz(path: str | os.PathLike, vectors: np.ndarray, rows: Sequence[Row]) -> None:
    """Single-file output of a small job: ok rows' embeddings and metadata, plus failed paths."""
    ok = [r for r in rows if r.status == "ok"]
    bad = [r for r in rows if r.status != "ok"]
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez(
        tmp,
        embeddings=vectors.astype(np.float32),
        paths=np.array([r.path for r in ok], dtype=str),
        window=np.array([r.window for r in ok], dtype=np.int64),
        start=np.array([r.start for r in ok], dtype=np.float64),
        end=np.array([r.end for r in ok], dtype=np.float64),
        duration=np.array([r.duration for r in ok], dtype=np.float64),
        sample_rate=np.array([r.sample_rate for r in ok], dtype=np.int64),
        error_paths=np.array([r.path for r in bad], dtype=str),
        error_reasons=np.array([r.reason for r in bad], dtype=str),
    )
    os.replace(tmp, out)
