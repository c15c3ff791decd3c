"""Search-index benchmark: build time, index memory, query latency and recall@10 against exact search.

    python benchmarks/search_index.py --clustered             # 1,000,000 x 1024: previous default vs auto
    python benchmarks/search_index.py --n 50000 --kinds hnsw  # HNSW builds slowly on 2 cores

Vectors are L2-normalised Gaussian draws (no clusters) unless --clustered (around 1000 centres). Two
query sets, each of separate draws: "other-centre" queries come from 1000 *other* centres (the setting
this script always used: queries unrelated to the data, like text queries against audio embeddings, the
hard case for every approximate index) and "data-centre" queries from the data's own centres (queries that
look like the data). Exact search is ``openclap.index.exact_top_k`` (chunked numpy matmul). Each of
--kinds is ``openclap.index.SearchIndex`` above its threshold: "ivf" with its previous default
(IVF-Flat, nprobe = nlist/16: the baseline) and "auto" (``openclap.index.plan_index``'s choice for the
size), both swept over nprobe; "hnsw" over efSearch. Index memory is the growth of resident memory over
the build (FAISS's structures; the float32 vectors are held once by SearchIndex either way).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from _machine import machine_line  # benchmarks/_machine.py (scripts run from benchmarks/)
from _memory import peak_rss_mb, rss_mb

from openclap.index import IndexRow, SearchIndex, exact_top_k, plan_index


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far, GB."""
    return peak_rss_mb() / 1024


def current_rss_gb() -> float:
    """Resident memory of this process now, GB."""
    return rss_mb()[0] / 1024


def make_vectors(n: int, dim: int, seed: int, clustered: bool, centre_seed: int | None = None) -> np.ndarray:
    """(n, dim) float32 unit vectors, generated in blocks to keep peak memory near the output size.

    Clustered: around 1000 centres drawn first from ``centre_seed`` (default ``seed``), so draws with
    another ``seed`` and the same ``centre_seed`` are new points around the same centres.
    """
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), np.float32)
    centers = rng.standard_normal((1000, dim), dtype=np.float32) if clustered else None
    if clustered and centre_seed is not None:  # rng has drawn its own centres above: same sequence as before
        centers = np.random.default_rng(centre_seed).standard_normal((1000, dim), dtype=np.float32)
    for s in range(0, n, 65536):
        block = rng.standard_normal((min(65536, n - s), dim), dtype=np.float32)
        if centers is not None:
            block = centers[rng.integers(len(centers), size=len(block))] + 0.6 * block
        out[s : s + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def recall_at_10(index: SearchIndex, queries: np.ndarray, truth: np.ndarray) -> float:
    """Mean overlap of the index's top 10 with the exact top 10 (batch search)."""
    hits = index.search(queries, 10, unique_files=False)
    return float(np.mean([len({h.row for h in a} & set(t.tolist())) / 10 for a, t in zip(hits, truth)]))


def ms_per_query(index: SearchIndex, queries: np.ndarray, count: int = 50) -> float:
    """Milliseconds per query, one query at a time (a user's search)."""
    t0 = time.perf_counter()
    for q in queries[:count]:
        index.search(q, 10, unique_files=False)
    return 1000 * (time.perf_counter() - t0) / min(count, len(queries))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--kinds", nargs="+", choices=("ivf", "auto", "hnsw"), default=["ivf", "auto"])
    parser.add_argument("--nprobe", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    parser.add_argument("--m", type=int, default=32, help="HNSW neighbours per node")
    parser.add_argument("--ef-construction", type=int, default=80)
    parser.add_argument("--ef-search", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument(
        "--clustered", action="store_true", help="vectors around 1000 centres instead of uniform"
    )
    parser.add_argument("--threads", type=int, default=None, help="FAISS/BLAS threads (default: all)")
    args = parser.parse_args()
    import faiss

    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    print(f"{machine_line()}, faiss {faiss.__version__}")
    print(
        f"data: {args.n:,} x {args.dim} {'clustered' if args.clustered else 'uniform random'} unit vectors, "
        f"{args.queries} queries per set, top-10"
    )
    t0 = time.perf_counter()
    vectors = make_vectors(args.n, args.dim, 0, args.clustered)
    query_sets = {"other-centre": make_vectors(args.queries, args.dim, 1, args.clustered)}
    if args.clustered:
        query_sets["data-centre"] = make_vectors(args.queries, args.dim, 2, True, centre_seed=0)
    print(f"generated in {time.perf_counter() - t0:.1f} s")
    truths, exact_ms = {}, {}
    for name, q in query_sets.items():
        t0 = time.perf_counter()
        truths[name] = exact_top_k(vectors, q, 10)[1]
        exact_ms[name] = 1000 * (time.perf_counter() - t0) / len(q)
    t0 = time.perf_counter()
    for q in query_sets["other-centre"][:5]:
        exact_top_k(vectors, q[None], 10)
    exact_single = 1000 * (time.perf_counter() - t0) / 5

    names = list(query_sets)
    header = " | ".join(f"recall@10 {n} | ms/query {n}" for n in names)
    rows_out = [
        "| exact (numpy, chunked) | - | - | - | "
        + " | ".join(f"1.000 | {exact_single:.1f} (batch {exact_ms[n]:.1f})" for n in names)
        + " |"
    ]
    rows = [IndexRow(f"/f{i}.wav") for i in range(args.n)]
    plan = plan_index(args.n)
    print(f"plan_index({args.n:,}) = {plan}")
    for kind in args.kinds:
        before = current_rss_gb()
        t0 = time.perf_counter()
        if kind == "ivf":  # the previous default, parameters as they were: nprobe = nlist / 16
            nlist = plan.nlist
            index = SearchIndex(
                vectors, rows, approximate_threshold=1, approximate="ivf", nprobe=max(16, nlist // 16)
            )
        elif kind == "hnsw":
            index = SearchIndex(
                vectors,
                rows,
                approximate_threshold=1,
                approximate="hnsw",
                hnsw_m=args.m,
                ef_construction=args.ef_construction,
            )
        else:
            index = SearchIndex(vectors, rows, approximate_threshold=1)
        build = time.perf_counter() - t0
        memory = current_rss_gb() - before
        label = {
            "ivf": "baseline: IVF-Flat (previous default)",
            "auto": f"auto: {index.kind}",
            "hnsw": "HNSW",
        }[kind]
        print(
            f"{label} built in {build:.0f} s, +{memory:.2f} GB resident, load average {os.getloadavg()[0]:.1f}"
        )
        if kind == "hnsw":
            settings = [("ef_search", v, f"efSearch={v}") for v in args.ef_search]
        else:
            default = index.nprobe
            values = sorted({default, *[p for p in args.nprobe if p <= index.nlist]})
            settings = [
                ("nprobe", v, f"nprobe={v}/{index.nlist}" + (" (default)" if v == default else ""))
                for v in values
            ]
        for attr, value, what in settings:
            setattr(index, attr, value)
            cells = " | ".join(
                f"{recall_at_10(index, query_sets[n], truths[n]):.3f} | {ms_per_query(index, query_sets[n]):.2f}"
                for n in names
            )
            extra = f", refine {index.refine}" if index.kind == "ivf-sq8" else ""
            rows_out.append(f"| {label} | {what}{extra} | {build:.0f} | {memory:.2f} | {cells} |")
        del index
    print()
    print(f"| index | setting | build (s) | index memory (GB) | {header} |")
    print("|---|---|---|---|" + "---|---|" * len(names))
    print("\n".join(rows_out))
    print()
    print(
        f"peak RSS {peak_rss_gb():.1f} GB (vectors alone: {vectors.nbytes / 1024**3:.1f} GB); "
        f"load average at the end {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
