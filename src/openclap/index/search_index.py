"""A text-to-audio (and audio-to-audio) search index over L2-normalised embeddings.

Small collections are searched exactly (a chunked numpy matrix product, so memory stays bounded);
from ``approximate_threshold`` rows on, a FAISS index (inner product) answers instead. Which one is
``approximate``; the default ``"auto"`` takes :func:`plan_index`'s choice for the collection's size:

* ``"ivf-sq8"`` (what ``"auto"`` picks): ``IndexIVFScalarQuantizer`` with 8-bit codes (a quarter of the
  float32 bytes to scan per query) over ``nlist ~ sqrt(R)`` k-means cells, ``nprobe`` scanned; the
  ``refine`` best candidates are re-scored exactly against our own float32 vectors, so scores are exact
  inner products and FAISS holds no second float copy (1 byte per dimension instead of 4).
* ``"ivf"``: ``IndexIVFFlat`` (the default before ``"auto"``): same cells, float32 copy inside FAISS.
* ``"hnsw"``: ``IndexHNSWFlat`` (``hnsw_m`` links, ``ef_search``); a build of a million vectors takes
  hours on 2 busy cores, and on high-dimensional data whose queries are not near the data (text
  queries against audio) its recall at a given latency was below IVF's in benchmarks/search_index.py.

Removing rows marks them deleted (filtered from results); the index is rebuilt without them once
they exceed a quarter of it. Added rows go into the existing FAISS index.

Directory layout::

    INDEX/index.json     model identity, window policy, kind, roots, counts
    INDEX/vectors.npy    (R, D) float32
    INDEX/rows.csv       path, window, start, end, duration, size, mtime_ns, deleted
    INDEX/ann.faiss      the FAISS index, when approximate
    INDEX/embeddings/    bulk-job output used by ``openclap index add`` (when built from files)
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

INDEX_FILE = "index.json"
VECTORS_FILE = "vectors.npy"
ROWS_FILE = "rows.csv"
FAISS_FILE = "ann.faiss"
APPROXIMATE_KINDS = ("ivf-sq8", "ivf", "hnsw")
EMBED_DIR = "embeddings"
INDEX_ROW_FIELDS = ("path", "window", "start", "end", "duration", "size", "mtime_ns", "deleted")
DEFAULT_THRESHOLD = 50_000
SCAN_BUDGET = 48_000  # rows whose 8-bit codes one query scans (plan_index): ~9 ms on 2 cores
FORMAT_VERSION = 1


@dataclass(frozen=True)
class IndexPlan:
    """The approximate index for a collection: kind and its parameters (see :func:`plan_index`)."""

    kind: str
    nlist: int
    nprobe: int
    refine: int


def plan_index(rows: int, top_k: int = 10) -> IndexPlan:
    """The index ``approximate="auto"`` builds for ``rows`` vectors, chosen by benchmarks/search_index.py.

    IVF with 8-bit codes and exact re-scoring. Cells: ``sqrt(rows)`` (k-means cost grows with cells x
    rows; at 1M x 1024 it built in 77 s on 2 cores). Probes: enough cells to scan ``SCAN_BUDGET`` rows
    per query, at least 16: the time per query follows the rows scanned (one 8-bit code each), so the
    latency stays near the same bound at every size, and smaller collections scan a larger share of
    their cells. At 1M clustered 1024-d vectors with queries away from the data's centres, recall@10 was
    0.939 / 0.955 / 0.962 / 0.964 at 32 / 40 / 48 / 64 of 1000 cells (6.2 / 6.8 / 8.7 / 11.3 ms per
    single query on 2 cores); at 200k, 0.88 at 74 of 447 cells, where the budget scans 108. Refine: the
    best ``max(4 * top_k, 64)`` candidates by code score are re-scored exactly (8-bit scores reorder
    close neighbours; re-scoring a few dozen float rows costs little next to the scan).
    """
    nlist = int(min(16384, max(8, round(rows**0.5))))
    per_cell = max(1.0, rows / nlist)
    nprobe = min(nlist, max(16, math.ceil(SCAN_BUDGET / per_cell)))
    return IndexPlan("ivf-sq8", nlist, nprobe, max(4 * top_k, 64))


@dataclass
class IndexRow:
    """Metadata of one indexed vector."""

    path: str
    window: int = -1
    start: float = 0.0
    end: float = 0.0
    duration: float = 0.0
    size: int = 0
    mtime_ns: int = 0
    deleted: bool = False


@dataclass
class SearchHit:
    """One search result; ``start``/``end`` are seconds into ``path``."""

    path: str
    start: float
    end: float
    score: float
    row: int

    def to_dict(self) -> dict:
        """Plain dict for JSON output."""
        return asdict(self)


def exact_top_k(
    vectors: np.ndarray, queries: np.ndarray, k: int, mask: np.ndarray | None = None, block_rows: int = 65536
) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-k: ``(scores, ids)`` each (Q, k'), best first; ``mask`` False rows are skipped."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    n = len(vectors)
    k = min(k, n if mask is None else int(mask.sum()))
    if k <= 0:
        return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
    best_s = np.full((len(q), 0), -np.inf, np.float32)
    best_i = np.zeros((len(q), 0), np.int64)
    for start in range(0, n, block_rows):
        block = np.asarray(vectors[start : start + block_rows], dtype=np.float32)
        scores = q @ block.T  # (Q, B)
        if mask is not None:
            scores[:, ~mask[start : start + len(block)]] = -np.inf
        kk = min(k, scores.shape[1])
        part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        best_s = np.concatenate([best_s, np.take_along_axis(scores, part, 1)], axis=1)
        best_i = np.concatenate([best_i, part + start], axis=1)
        if best_s.shape[1] > k:
            keep = np.argpartition(-best_s, k - 1, axis=1)[:, :k]
            best_s, best_i = np.take_along_axis(best_s, keep, 1), np.take_along_axis(best_i, keep, 1)
    order = np.argsort(-best_s, axis=1, kind="stable")
    return np.take_along_axis(best_s, order, 1), np.take_along_axis(best_i, order, 1)


def _rescore(vectors: np.ndarray, q: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner products of each query with its candidate rows (-1 = none); best ``k`` first."""
    scores = np.full((len(q), k), -np.inf, np.float32)
    ids = np.full((len(q), k), -1, np.int64)
    for i, (row, qq) in enumerate(zip(cand, q)):
        row = np.unique(row[row >= 0])  # sorted: sequential reads when ``vectors`` is memory-mapped
        s = np.asarray(vectors[row], dtype=np.float32) @ qq
        best = np.argsort(-s, kind="stable")[:k]
        scores[i, : len(best)], ids[i, : len(best)] = s[best], row[best]
    return scores, ids


def _import_faiss():
    try:
        import faiss
    except ImportError as exc:
        raise ImportError(
            "the approximate index needs FAISS: `pip install faiss-cpu` (or raise the approximate threshold)"
        ) from exc
    return faiss


class SearchIndex:
    """Vectors with their rows; exact or FAISS (IVF-SQ8 + exact re-scoring, IVF, HNSW) search; add, remove, save, load."""

    def __init__(
        self,
        vectors: np.ndarray,
        rows: Sequence[IndexRow],
        info: dict | None = None,
        approximate_threshold: int = DEFAULT_THRESHOLD,
        approximate: str = "auto",
        nlist: int | None = None,
        nprobe: int | None = None,
        refine: int | None = None,
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 128,
    ) -> None:
        if approximate != "auto" and approximate not in APPROXIMATE_KINDS:
            raise ValueError(f"approximate must be 'auto' or one of {APPROXIMATE_KINDS}, got {approximate!r}")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(rows):
            raise ValueError(f"need (R, D) vectors and R rows, got {vectors.shape} and {len(rows)} rows")
        self.vectors = vectors
        self.rows = list(rows)
        self.info = dict(info or {})
        self.info.setdefault("embed_dim", int(vectors.shape[1]))
        self.approximate_threshold = approximate_threshold
        self.approximate = approximate
        self.nlist, self.nprobe, self.refine = nlist, nprobe, refine
        self._built_kind: str | None = None  # the FAISS kind built ("auto" resolved), None when exact
        self.hnsw_m, self.ef_construction, self.ef_search = hnsw_m, ef_construction, ef_search
        self._faiss = None
        self._deleted = np.array([r.deleted for r in self.rows], dtype=bool)
        self._maybe_build()

    # ------------------------------------------------------------------------------- properties
    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def kind(self) -> str:
        """ "ivf-sq8", "ivf" or "hnsw" when a FAISS index answers queries, else "exact"."""
        return self._built_kind if self._faiss is not None and self._built_kind else "exact"

    def __len__(self) -> int:
        """Number of live (not deleted) rows."""
        return int((~self._deleted).sum())

    def paths(self) -> set[str]:
        """Paths of the live rows."""
        return {r.path for r, d in zip(self.rows, self._deleted) if not d}

    # --------------------------------------------------------------------------------- building
    def _maybe_build(self) -> None:
        if len(self.vectors) >= self.approximate_threshold:
            if self._faiss is None:
                self._build_faiss()
        else:
            self._faiss = None

    def _build_faiss(self) -> None:
        faiss = _import_faiss()
        t0 = time.perf_counter()
        n = len(self.vectors)
        plan = plan_index(n)
        kind = plan.kind if self.approximate == "auto" else self.approximate
        if kind == "hnsw":
            index = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = self.ef_construction
        else:
            self.nlist = self.nlist or plan.nlist
            self.nprobe = self.nprobe or plan.nprobe
            self.refine = self.refine or plan.refine
            quantizer = faiss.IndexFlatIP(self.dim)
            if kind == "ivf-sq8":
                index = faiss.IndexIVFScalarQuantizer(
                    quantizer, self.dim, self.nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
                )
            else:
                index = faiss.IndexIVFFlat(quantizer, self.dim, self.nlist, faiss.METRIC_INNER_PRODUCT)
            rng = np.random.default_rng(0)  # k-means on a seeded sample: the same index every time
            sample = rng.choice(n, size=min(n, 40 * self.nlist), replace=False)
            index.train(np.ascontiguousarray(self.vectors[np.sort(sample)]))
        for start in range(0, len(self.vectors), 65536):
            index.add(np.ascontiguousarray(self.vectors[start : start + 65536]))
        self._faiss = index
        self._built_kind = kind
        logger.info(
            "built %s index over %d vectors in %.1f s",
            kind,
            len(self.vectors),
            time.perf_counter() - t0,
        )

    # ---------------------------------------------------------------------------------- search
    def search(
        self,
        queries: np.ndarray,
        top_k: int = 10,
        unique_files: bool = True,
        exclude_paths: Sequence[str] = (),
    ) -> list[list[SearchHit]]:
        """Best ``top_k`` hits per query (Q, D) or (D,); ``unique_files`` keeps each file's best window."""
        q = np.asarray(queries, dtype=np.float32)
        q = q[None] if q.ndim == 1 else q
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"queries must be (Q, {self.dim}) or ({self.dim},), got {np.shape(queries)}")
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        excluded = set(exclude_paths)
        alive = len(self)
        want = top_k
        while True:
            scores, ids = self._raw_search(q, want)
            out = [self._hits(s, i, top_k, unique_files, excluded) for s, i in zip(scores, ids)]
            if all(len(h) >= min(top_k, alive) for h in out) or want >= alive + int(self._deleted.sum()):
                return out
            want = min(want * 4, len(self.vectors))

    def _raw_search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self._faiss is None:
            mask = None if not self._deleted.any() else ~self._deleted
            return exact_top_k(self.vectors, q, k, mask)
        k = min(k, len(self.vectors))
        if self._built_kind == "hnsw":
            self._faiss.hnsw.efSearch = max(self.ef_search, k)
            return self._faiss.search(q, k)
        self._faiss.nprobe = self.nprobe
        # fewer queries than threads (a user's search): each query's cells are split over the threads
        # (FAISS parallel_mode 1); a batch splits the queries (mode 0). Same candidates either way.
        self._faiss.parallel_mode = 1 if len(q) < _import_faiss().omp_get_max_threads() else 0
        if self._built_kind != "ivf-sq8":
            return self._faiss.search(q, k)
        _, cand = self._faiss.search(q, min(max(k, self.refine or k), len(self.vectors)))
        return _rescore(self.vectors, q, cand, k)

    def _hits(self, scores, ids, top_k: int, unique_files: bool, excluded: set[str]) -> list[SearchHit]:
        hits: list[SearchHit] = []
        seen: set[str] = set()
        for s, i in zip(scores, ids):
            if i < 0 or self._deleted[i] or not np.isfinite(s):
                continue
            r = self.rows[i]
            if r.path in excluded or (unique_files and r.path in seen):
                continue
            seen.add(r.path)
            hits.append(SearchHit(r.path, r.start, r.end, float(s), int(i)))
            if len(hits) == top_k:
                break
        return hits

    # ------------------------------------------------------------------------------ add/remove
    def remove_paths(self, paths: Sequence[str]) -> int:
        """Delete every row of the given files (or of files under the given folders); returns rows removed."""
        targets = [str(Path(p)) for p in paths]
        prefixes = tuple(t.rstrip(os.sep) + os.sep for t in targets)
        exact = set(targets)
        hit = np.array([(r.path in exact or r.path.startswith(prefixes)) for r in self.rows], dtype=bool)
        return self._delete(hit)

    def remove_missing(self) -> int:
        """Delete rows whose file no longer exists or changed since it was embedded; returns rows removed."""
        stale = np.zeros(len(self.rows), dtype=bool)
        cache: dict[str, bool] = {}
        for i, r in enumerate(self.rows):
            if r.path not in cache:
                try:
                    st = os.stat(r.path)
                    cache[r.path] = (st.st_size, st.st_mtime_ns) != (r.size, r.mtime_ns) and r.size != 0
                except OSError:
                    cache[r.path] = True
            stale[i] = cache[r.path]
        return self._delete(stale)

    def _delete(self, mask: np.ndarray) -> int:
        new = mask & ~self._deleted
        count = int(new.sum())
        self._deleted |= mask
        if count and self._deleted.sum() > 0.25 * len(self.rows):
            self.compact()
        return count

    def compact(self) -> None:
        """Drop deleted rows for good (rebuilds the HNSW graph when there is one)."""
        keep = ~self._deleted
        self.vectors = np.ascontiguousarray(self.vectors[keep])
        self.rows = [r for r, k in zip(self.rows, keep) if k]
        self._deleted = np.zeros(len(self.rows), dtype=bool)
        self._faiss = None
        self._maybe_build()

    def add(self, vectors: np.ndarray, rows: Sequence[IndexRow]) -> int:
        """Append rows; earlier rows of the same files are deleted first. Returns rows added."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim or len(vectors) != len(rows):
            raise ValueError(
                f"need ({len(rows)}, {self.dim}) vectors for {len(rows)} rows, got {vectors.shape}"
            )
        if not len(rows):
            return 0
        self.remove_paths(sorted({r.path for r in rows}))
        self.vectors = np.concatenate([self.vectors, vectors])
        self.rows.extend(rows)
        self._deleted = np.concatenate([self._deleted, np.zeros(len(rows), dtype=bool)])
        if self._faiss is not None:
            self._faiss.add(vectors)
        else:
            self._maybe_build()
        return len(rows)

    # -------------------------------------------------------------------------------- save/load
    def save(self, directory: str | os.PathLike) -> Path:
        """Write the index directory (see the module docstring); each file replaced atomically."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / (VECTORS_FILE + ".tmp")
        with open(tmp, "wb") as f:
            np.save(f, self.vectors)
        os.replace(tmp, out / VECTORS_FILE)
        tmp = out / (ROWS_FILE + ".tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(INDEX_ROW_FIELDS)
            for r, d in zip(self.rows, self._deleted):
                writer.writerow([r.path, r.window, r.start, r.end, r.duration, r.size, r.mtime_ns, int(d)])
        os.replace(tmp, out / ROWS_FILE)
        if self._faiss is not None:
            faiss = _import_faiss()
            faiss.write_index(self._faiss, str(out / (FAISS_FILE + ".tmp")))
            os.replace(out / (FAISS_FILE + ".tmp"), out / FAISS_FILE)
        elif (out / FAISS_FILE).exists():
            (out / FAISS_FILE).unlink()
        info = {
            **self.info,
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "rows": len(self),
            "files": len(self.paths()),
            "approximate_threshold": self.approximate_threshold,
            "approximate": self.approximate,
            "ivf": {"nlist": self.nlist, "nprobe": self.nprobe, "refine": self.refine},
            "hnsw": {"m": self.hnsw_m, "ef_construction": self.ef_construction, "ef_search": self.ef_search},
        }
        self.info = info
        tmp = out / (INDEX_FILE + ".tmp")
        tmp.write_text(json.dumps(info, indent=2) + "\n")
        os.replace(tmp, out / INDEX_FILE)
        return out

    @classmethod
    def load(cls, directory: str | os.PathLike) -> SearchIndex:
        """Read an index directory written by ``save``."""
        d = Path(directory)
        if not (d / INDEX_FILE).is_file():
            raise FileNotFoundError(
                f"{d} is not an openclap index (no {INDEX_FILE}); build one with `openclap index build SOURCE --out {d}`"
            )
        info = json.loads((d / INDEX_FILE).read_text())
        # Memory-mapped: exact search streams it in blocks, a FAISS index holds its own copy.
        vectors = np.load(d / VECTORS_FILE, mmap_mode="r")
        with open(d / ROWS_FILE, newline="") as f:
            rows = [
                IndexRow(
                    path=x["path"],
                    window=int(x["window"]),
                    start=float(x["start"]),
                    end=float(x["end"]),
                    duration=float(x["duration"]),
                    size=int(x["size"]),
                    mtime_ns=int(x["mtime_ns"]),
                    deleted=x["deleted"] == "1",
                )
                for x in csv.DictReader(f)
            ]
        hnsw = info.get("hnsw", {})
        threshold = int(info.get("approximate_threshold", DEFAULT_THRESHOLD))
        index = cls.__new__(cls)
        if vectors.dtype != np.float32:
            raise ValueError(f"{d / VECTORS_FILE} holds {vectors.dtype}, expected float32; rebuild the index")
        index.vectors = vectors
        index.rows = rows
        index.info = info
        index.approximate_threshold = threshold
        index.approximate = info.get("approximate", "ivf")
        ivf = info.get("ivf", {})
        index.nlist, index.nprobe, index.refine = ivf.get("nlist"), ivf.get("nprobe"), ivf.get("refine")
        index.hnsw_m = int(hnsw.get("m", 32))
        index.ef_construction = int(hnsw.get("ef_construction", 80))
        index.ef_search = int(hnsw.get("ef_search", 128))
        index._deleted = np.array([r.deleted for r in rows], dtype=bool)
        index._faiss = None
        index._built_kind = None
        if (d / FAISS_FILE).is_file() and info.get("kind") in APPROXIMATE_KINDS:
            faiss = _import_faiss()
            index._faiss = faiss.read_index(str(d / FAISS_FILE))
            index._built_kind = info["kind"]
            if index._faiss.ntotal != len(vectors):
                raise ValueError(
                    f"{d / FAISS_FILE} holds {index._faiss.ntotal} vectors, {VECTORS_FILE} {len(vectors)}; rebuild the index"
                )
        else:
            index._maybe_build()
        return index

    def is_inside_roots(self, path: str | os.PathLike) -> bool:
        """True when ``path`` (symlinks resolved) lies inside one of the index's roots."""
        try:
            real = Path(path).resolve(strict=True)
        except (OSError, RuntimeError):
            return False
        for root in self.info.get("roots", []):
            r = Path(root).resolve()
            if real == r or r in real.parents:
                return True
        return False
