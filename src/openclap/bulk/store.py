"""On-disk layout of a bulk embedding output directory.

::

    OUT/job.json                     model identity and window policy (a re-run must match it)
    OUT/chunks/<name>.npy            (R, D) float32 embeddings of the chunk's "ok" rows, in row order
    OUT/chunks/<name>.csv            one row per embedding (status "ok") or failed file (status "error")
    OUT/errors.csv                   path,size,mtime_ns,reason of every file that failed
    OUT/manifest.json                what the directory holds, written at the end of a run
    OUT/.lock                        held (flock) by the one job writing the directory

A chunk is committed by writing its ``.npy`` then its ``.csv`` (each to a temporary name, then
``os.replace``): a chunk counts only when its ``.csv`` exists, so a run killed at any point loses at
most the chunk it was writing. Chunk names sort in the order they were written; when a file was
embedded again (its size or mtime changed), the rows of its newest chunk win.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

try:  # POSIX; on Windows there is no flock and the directory is not locked
    import fcntl
except ImportError:  # pragma: no cover - not on the platforms CI runs
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

CHUNK_DIR = "chunks"
JOB_FILE = "job.json"
MANIFEST_FILE = "manifest.json"
ERRORS_FILE = "errors.csv"
LOCK_FILE = ".lock"
ROW_FIELDS = (
    "path",
    "status",
    "window",
    "start",
    "end",
    "duration",
    "sample_rate",
    "size",
    "mtime_ns",
    "reason",
)
FORMAT_VERSION = 1
# job.json keys that must match for earlier results to be reused ("model"/"checkpoint" only say where from).
IDENTITY_KEYS = ("model_id", "embed_dim", "pool", "sample_rate", "window_seconds", "hop_seconds")


@dataclass
class Row:
    """One output row: a window (or pooled clip) embedding of a file, or the file's failure."""

    path: str
    status: str  # "ok" or "error"
    window: int = -1  # window index for --pool none, -1 for a pooled clip or an error
    start: float = 0.0  # seconds
    end: float = 0.0
    duration: float = 0.0  # seconds of audio in the file
    sample_rate: int = 0  # the file's own rate
    size: int = 0  # bytes, for resuming
    mtime_ns: int = 0
    reason: str = ""


@dataclass
class EmbeddingTable:
    """Every current "ok" row of an output directory with its embedding, plus the failed files."""

    vectors: np.ndarray  # (R, D) float32
    rows: list[Row]
    errors: list[Row] = field(default_factory=list)


def file_key(path: str) -> tuple[int, int]:
    """(size, mtime_ns) of a file: what decides whether an earlier result is still valid."""
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and ``os.replace``."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _write_rows_csv(path: Path, rows: Iterable[Row]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(ROW_FIELDS)
        for r in rows:
            writer.writerow([getattr(r, k) for k in ROW_FIELDS])
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_rows_csv(path: Path) -> list[Row]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or set(ROW_FIELDS) - set(reader.fieldnames):
            raise ValueError(f"{path} is not an openclap chunk table: expected columns {list(ROW_FIELDS)}")
        return [
            Row(
                path=d["path"],
                status=d["status"],
                window=int(d["window"]),
                start=float(d["start"]),
                end=float(d["end"]),
                duration=float(d["duration"]),
                sample_rate=int(d["sample_rate"]),
                size=int(d["size"]),
                mtime_ns=int(d["mtime_ns"]),
                reason=d["reason"],
            )
            for d in reader
        ]


class OutputBusyError(ValueError):
    """Another job is writing the same output directory (its ``.lock`` is held)."""


class ChunkStore:
    """Reads and writes the chunks of one output directory."""

    def __init__(self, out_dir: str | os.PathLike) -> None:
        self.root = Path(out_dir)
        self.chunk_dir = self.root / CHUNK_DIR

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the directory's writer lock while the block runs, or raise at once if another job holds it.

        Two jobs writing one directory would each take the other's half-written chunks for a killed run's
        leftovers (``clean_partial``) and delete them. The lock is an ``flock`` on ``OUT/.lock``: the
        kernel drops it when its holder exits, so a killed run never leaves a stale lock behind.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise OutputBusyError(
                        f"{self.root} is being written by another openclap job right now (it holds "
                        f"{self.root / LOCK_FILE}); give each concurrent job (each --shard) its own --out "
                        "and join them with `openclap embed merge`, or wait for that job to finish"
                    ) from None
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    # ------------------------------------------------------------------------------- job identity
    def check_job(self, job: dict) -> None:
        """Record ``job`` in job.json, or check that an earlier run used the same model and policy."""
        self.chunk_dir.mkdir(parents=True, exist_ok=True)
        path = self.root / JOB_FILE
        if path.is_file():
            old = json.loads(path.read_text())
            diff = {k: (old.get(k), job.get(k)) for k in IDENTITY_KEYS if old.get(k) != job.get(k)}
            if diff:
                details = "; ".join(f"{k}: before {a!r}, now {b!r}" for k, (a, b) in diff.items())
                raise ValueError(
                    f"{self.root} holds embeddings made with other settings ({details}); "
                    "pass a new --out directory, or the same model and options as before"
                )
            return
        atomic_write_text(path, json.dumps(job, indent=2) + "\n")

    def job(self) -> dict:
        """The directory's job.json."""
        path = self.root / JOB_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{self.root} has no {JOB_FILE}: it is not an `openclap embed` output directory"
            )
        return json.loads(path.read_text())

    # ------------------------------------------------------------------------------------ chunks
    def clean_partial(self) -> int:
        """Remove what a killed run left half-written; returns how many files were removed."""
        removed = 0
        if not self.chunk_dir.is_dir():
            return 0
        for p in self.chunk_dir.iterdir():
            orphan = p.suffix == ".npy" and not p.with_suffix(".csv").exists()
            if p.name.endswith(".tmp") or orphan:
                p.unlink()
                removed += 1
        if removed:
            logger.info(
                "removed %d partial chunk file(s) of an interrupted run in %s", removed, self.chunk_dir
            )
        return removed

    def chunk_names(self) -> list[str]:
        """Committed chunks, oldest first."""
        if not self.chunk_dir.is_dir():
            return []
        return sorted(p.stem for p in self.chunk_dir.glob("*.csv"))

    def new_chunk_name(self, tag: str = "") -> str:
        """A name that sorts after every chunk written before it."""
        return f"c{time.time_ns():020d}{tag}"

    def write_chunk(self, name: str, rows: Sequence[Row], vectors: np.ndarray) -> None:
        """Commit one chunk: ``vectors`` holds one row per "ok" row, in order."""
        ok = sum(r.status == "ok" for r in rows)
        if ok != len(vectors):
            raise ValueError(f"chunk {name}: {ok} ok rows but {len(vectors)} vectors")
        self.chunk_dir.mkdir(parents=True, exist_ok=True)
        npy = self.chunk_dir / f"{name}.npy"
        tmp = self.chunk_dir / f"{name}.npy.tmp"
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(vectors, dtype=np.float32))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, npy)
        _write_rows_csv(self.chunk_dir / f"{name}.csv", rows)

    def read_chunk(self, name: str) -> tuple[list[Row], np.ndarray]:
        """Rows and vectors of one committed chunk."""
        rows = _read_rows_csv(self.chunk_dir / f"{name}.csv")
        vectors = np.load(self.chunk_dir / f"{name}.npy")
        ok = sum(r.status == "ok" for r in rows)
        if ok != len(vectors):
            raise ValueError(
                f"chunk {self.chunk_dir / name} is inconsistent ({ok} ok rows, {len(vectors)} vectors); "
                "delete its .csv and .npy and re-run `openclap embed` to redo those files"
            )
        return rows, vectors

    def done(self) -> dict[str, tuple[int, int]]:
        """path -> (size, mtime_ns) of every file a committed chunk holds (newest chunk wins)."""
        seen: dict[str, tuple[int, int]] = {}
        for name in self.chunk_names():
            for r in _read_rows_csv(self.chunk_dir / f"{name}.csv"):
                seen[r.path] = (r.size, r.mtime_ns)
        return seen

    def read_table(self, with_vectors: bool = True) -> EmbeddingTable:
        """The current rows: for each file only those of the newest chunk holding it."""
        names = self.chunk_names()
        owner: dict[str, int] = {}
        tables = []
        for i, name in enumerate(names):
            rows = _read_rows_csv(self.chunk_dir / f"{name}.csv")
            tables.append(rows)
            for r in rows:
                owner[r.path] = i
        vectors: list[np.ndarray] = []
        out_rows: list[Row] = []
        errors: list[Row] = []
        for i, (name, rows) in enumerate(zip(names, tables)):
            ok_mask = [r.status == "ok" for r in rows]
            keep = [owner[r.path] == i for r in rows]
            if with_vectors and any(k and o for k, o in zip(keep, ok_mask)):
                _, vecs = self.read_chunk(name)
                sel = [k for k, o in zip(keep, ok_mask) if o]
                vectors.append(vecs[np.asarray(sel, dtype=bool)])
            for r, k in zip(rows, keep):
                if k:
                    (out_rows if r.status == "ok" else errors).append(r)
        dim = int(self.job().get("embed_dim", 0)) if (self.root / JOB_FILE).is_file() else 0
        mat = np.concatenate(vectors) if vectors else np.zeros((0, dim), dtype=np.float32)
        return EmbeddingTable(mat, out_rows, errors)

    # ------------------------------------------------------------------------- summary files
    def write_summary(self, extra: dict | None = None) -> dict:
        """Write errors.csv and manifest.json describing the directory's current content."""
        table = self.read_table(with_vectors=False)
        with open(self.root / (ERRORS_FILE + ".tmp"), "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "size", "mtime_ns", "reason"])
            for r in sorted(table.errors, key=lambda r: r.path):
                writer.writerow([r.path, r.size, r.mtime_ns, r.reason])
        os.replace(self.root / (ERRORS_FILE + ".tmp"), self.root / ERRORS_FILE)
        chunks = []
        for name in self.chunk_names():
            rows = _read_rows_csv(self.chunk_dir / f"{name}.csv")
            chunks.append({"name": name, "rows": len(rows), "ok_rows": sum(r.status == "ok" for r in rows)})
        manifest = {
            "format_version": FORMAT_VERSION,
            **self.job(),
            "files": len({r.path for r in table.rows}),
            "rows": len(table.rows),
            "errors": len(table.errors),
            "chunks": chunks,
            "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **(extra or {}),
        }
        atomic_write_text(self.root / MANIFEST_FILE, json.dumps(manifest, indent=2) + "\n")
        return manifest


def merge_outputs(
    sources: Sequence[str | os.PathLike], out_dir: str | os.PathLike, chunk_rows: int = 100_000
) -> dict:
    """Merge output directories (e.g. one per ``--shard``) into ``out_dir``; returns its manifest.

    All sources must come from the same model and window policy. A file present in several sources
    keeps the rows of its newest chunk.
    """
    if not sources:
        raise ValueError("merge needs at least one source directory")
    out = Path(out_dir).resolve()
    stores = [ChunkStore(s) for s in sources]
    for s in stores:
        if s.root.resolve() == out:
            raise ValueError(f"merge output {out} is also a source; pass a new --out directory")
    job = stores[0].job()
    for s in stores[1:]:
        other = s.job()
        if any(other.get(k) != job.get(k) for k in IDENTITY_KEYS):
            raise ValueError(
                f"cannot merge {s.root} with {stores[0].root}: made with other models or settings "
                f"({ {k: other.get(k) for k in IDENTITY_KEYS} } vs { {k: job.get(k) for k in IDENTITY_KEYS} })"
            )
    target = ChunkStore(out)
    with target.exclusive():
        return _merge_into(target, stores, job, chunk_rows)


def _merge_into(target: ChunkStore, stores: Sequence[ChunkStore], job: dict, chunk_rows: int) -> dict:
    """``merge_outputs``' work, with ``target``'s writer lock held."""
    target.check_job(job)
    target.clean_partial()
    # Gather every chunk of every source in write order, then keep the newest rows per file.
    items = sorted((name, s) for s in stores for name in s.chunk_names())
    owner: dict[str, tuple[str, str]] = {}
    for name, s in items:
        for r in _read_rows_csv(s.chunk_dir / f"{name}.csv"):
            owner[r.path] = (str(s.root), name)
    rows_out: list[Row] = []
    vecs_out: list[np.ndarray] = []
    for name, s in items:
        rows, vecs = s.read_chunk(name)
        ok_i = 0
        for r in rows:
            keep = owner[r.path] == (str(s.root), name)
            if r.status == "ok":
                if keep:
                    rows_out.append(r)
                    vecs_out.append(vecs[ok_i])
                ok_i += 1
            elif keep:
                rows_out.append(r)
        while len(rows_out) >= chunk_rows:
            _flush_merged(target, rows_out[:chunk_rows], vecs_out, chunk_rows)
            rows_out = rows_out[chunk_rows:]
    _flush_merged(target, rows_out, vecs_out, len(rows_out))
    return target.write_summary({"merged_from": [str(s.root) for s in stores]})


def _flush_merged(target: ChunkStore, rows: list[Row], vecs: list[np.ndarray], count: int) -> None:
    if not rows:
        return
    ok = sum(r.status == "ok" for r in rows[:count])
    dim = len(vecs[0]) if vecs else int(target.job().get("embed_dim", 0))
    mat = np.stack(vecs[:ok]) if ok else np.zeros((0, dim), dtype=np.float32)
    del vecs[:ok]
    target.write_chunk(target.new_chunk_name("-merged"), rows[:count], mat)


def row_dict(row: Row) -> dict:
    """A row as a plain dict (JSON output)."""
    return asdict(row)
