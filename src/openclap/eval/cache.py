"""On-disk cache of audio embeddings, and the embedding step every evaluation shares.

An entry is keyed by (model fingerprint, resolved file path, file size, file mtime in ns): a changed
file or a different model misses the cache; a second evaluation of the same files with other prompts
reads every embedding back without decoding any audio. The model fingerprint hashes the model config
(which includes the clip policy: sample rate, window length, hop, padding), the device type and every
weight tensor, so two checkpoints of one architecture never share entries.

Storage: one SQLite file per model fingerprint under the cache folder (default
``$OPENCLAP_CACHE_DIR`` or ``~/.cache/openclap/embeddings``); vectors are float32 blobs.

``embed_files`` turns a list of paths into embeddings: missing files are counted and skipped without
being opened, unreadable ones (``AudioLoadError``) are counted with their reason, and both are reported
once in one log line; the caller's report carries the counts and the list.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from openclap.errors import state_dict_fingerprint
from openclap.eval.datasets.base import EvalDataset

logger = logging.getLogger(__name__)

CACHE_ENV = "OPENCLAP_CACHE_DIR"
MAX_LISTED_FAILURES = 100  # failures listed by path in a report; the counts are always complete


def default_cache_dir() -> Path:
    """``$OPENCLAP_CACHE_DIR`` or ``~/.cache/openclap/embeddings``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "openclap" / "embeddings"


def model_fingerprint(model: torch.nn.Module, config: dict) -> str:
    """Hex digest of a model's config and weights (names, shapes, dtypes, bytes)."""
    return state_dict_fingerprint(model.state_dict(), extra=config)


def pipeline_fingerprint(pipeline: object) -> str:
    """Fingerprint of a ``ClapPipeline`` and its device type (computed once, remembered on the object).

    The device type is part of it because CPU and GPU kernels give embeddings that differ in the last
    digits; a cache filled on one never answers for the other.
    """
    cached = getattr(pipeline, "_openclap_eval_fingerprint", None)
    if cached is None:
        config = dict(pipeline.config.to_dict(), _device_type=pipeline.device.type)  # type: ignore[attr-defined]
        cached = model_fingerprint(pipeline.model, config)  # type: ignore[attr-defined]
        pipeline._openclap_eval_fingerprint = cached  # type: ignore[attr-defined]
    return cached


class EmbeddingCache:
    """SQLite-backed map (path, size, mtime) -> embedding for one model fingerprint."""

    def __init__(self, directory: str | os.PathLike, fingerprint: str) -> None:
        self.directory = Path(directory).expanduser()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / f"{fingerprint}.sqlite"
        self._db = sqlite3.connect(self.path)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS embeddings ("
            " path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, vector BLOB NOT NULL)"
        )
        self._db.commit()

    @staticmethod
    def _stat(path: Path) -> tuple[str, int, int]:
        st = path.stat()
        return str(path.resolve()), st.st_size, st.st_mtime_ns

    def get(self, path: Path) -> np.ndarray | None:
        """The cached embedding of ``path`` if its size and mtime still match, else None."""
        key, size, mtime = self._stat(path)
        row = self._db.execute(
            "SELECT size, mtime_ns, vector FROM embeddings WHERE path = ?", (key,)
        ).fetchone()
        if row is None or row[0] != size or row[1] != mtime:
            return None
        return np.frombuffer(row[2], dtype=np.float32).copy()

    def put_many(self, entries: Sequence[tuple[Path, np.ndarray]]) -> None:
        """Store embeddings (one transaction)."""
        rows = []
        for path, vector in entries:
            key, size, mtime = self._stat(path)
            rows.append((key, size, mtime, np.ascontiguousarray(vector, dtype=np.float32).tobytes()))
        self._db.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?)", rows)
        self._db.commit()

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0])

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def __enter__(self) -> EmbeddingCache:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class EmbeddedFiles:
    """Embeddings of the files that could be read, and an account of those that could not."""

    embeddings: np.ndarray  # (K, D) float32, rows in the order of `ok`
    ok: np.ndarray  # (K,) indices into the input list
    missing: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    cached: int = 0  # embeddings read from the cache
    computed: int = 0  # embeddings computed now
    seconds: float = 0.0

    @property
    def num_excluded(self) -> int:
        return len(self.missing) + len(self.unreadable)

    def excluded_report(self) -> dict[str, object]:
        """JSON-ready counts and (up to MAX_LISTED_FAILURES) paths with reasons."""
        files = [{"path": p, "reason": "missing"} for p in self.missing]
        files += [{"path": p, "reason": reason} for p, reason in self.unreadable]
        return {
            "count": self.num_excluded,
            "missing": len(self.missing),
            "unreadable": len(self.unreadable),
            "files": files[:MAX_LISTED_FAILURES],
        }


def embed_files(
    pipeline: object,
    paths: Sequence[Path],
    *,
    cache: EmbeddingCache | None = None,
    batch_size: int = 8,
    progress: bool = False,
    what: str = "dataset",
) -> EmbeddedFiles:
    """Embed ``paths`` with ``pipeline`` (a ``ClapPipeline``), reading and filling ``cache``."""
    start = time.perf_counter()
    vectors: dict[int, np.ndarray] = {}
    missing: list[str] = []
    todo: list[int] = []
    for i, path in enumerate(paths):
        if not path.is_file():
            missing.append(str(path))
            continue
        hit = cache.get(path) if cache is not None else None
        if hit is None:
            todo.append(i)
        else:
            vectors[i] = hit
    cached = len(vectors)
    unreadable: list[tuple[str, str]] = []
    pending: list[tuple[Path, np.ndarray]] = []
    results = pipeline.iter_audio_embeddings(  # type: ignore[attr-defined]
        [paths[i] for i in todo], batch_size=batch_size, progress=progress
    )
    for i, result in zip(todo, results):
        if result.error is not None:
            unreadable.append((str(paths[i]), result.error))
            continue
        vectors[i] = result.embedding.astype(np.float32)
        if cache is not None:
            pending.append((paths[i], vectors[i]))
            if len(pending) >= 256:
                cache.put_many(pending)
                pending = []
    if cache is not None and pending:
        cache.put_many(pending)
    ok = np.array(sorted(vectors), dtype=np.int64)
    dim = next(iter(vectors.values())).shape[0] if vectors else 0
    embeddings = np.stack([vectors[i] for i in ok]) if len(ok) else np.zeros((0, dim), np.float32)
    out = EmbeddedFiles(
        embeddings, ok, missing, unreadable, cached, len(todo) - len(unreadable), time.perf_counter() - start
    )
    if out.num_excluded:
        first = missing[0] if missing else f"{unreadable[0][0]} ({unreadable[0][1]})"
        logger.warning(
            "%s: %d of %d file(s) excluded from the metrics (%d missing, %d unreadable); first: %s",
            what,
            out.num_excluded,
            len(paths),
            len(missing),
            len(unreadable),
            first,
        )
    return out


def embed_dataset(
    pipeline: object,
    dataset: EvalDataset,
    *,
    embedded: EmbeddedFiles | None = None,
    cache: EmbeddingCache | None = None,
    batch_size: int = 8,
    progress: bool = False,
    what: str | None = None,
) -> EmbeddedFiles:
    """``embed_files`` over ``dataset``'s items (unless ``embedded`` is given); raises if none was readable."""
    what = what or dataset.name
    if embedded is None:
        embedded = embed_files(
            pipeline,
            [item.path for item in dataset.items],
            cache=cache,
            batch_size=batch_size,
            progress=progress,
            what=what,
        )
    if len(embedded.ok) == 0:
        raise ValueError(
            f"{what}: none of the {len(dataset)} files could be read; "
            f"first failure: {embedded.excluded_report()['files'][:1]}"
        )
    return embedded
