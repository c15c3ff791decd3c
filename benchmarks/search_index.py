"""Search-index benchmark: build time, query latency and recall@10 of the HNSW index against exact search.

    python benchmarks/search_index.py                      # 1,000,000 random 1024-d vectors, IVF (minutes)
    python benchmarks/search_index.py --n 50000 --kind hnsw  # HNSW builds slowly on 2 cores

Vectors are L2-normalised Gaussian draws (the hardest case for a graph index: no clusters) unless
--clustered. Queries are separate draws. Exact search is ``openclap.index.exact_top_k`` (chunked numpy
matmul); the approximate index is ``openclap.index.SearchIndex`` above its threshold (FAISS IVF-Flat
or HNSW, inner product), swept over nprobe / efSearch. Prints a table; peak RSS from ``resource.getrusage``.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time

import numpy as np
import torch

from openclap.index import IndexRow, SearchIndex, exact_top_k


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far, GB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def make_vectors(n: int, dim: int, seed: int, clustered: bool) -> np.ndarray:
    """(n, dim) float32 unit vectors, generated in blocks to keep peak memory near the output size."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), np.float32)
    centers = rng.standard_normal((1000, dim), dtype=np.float32) if clustered else None
    for s in range(0, n, 65536):
        block = rng.standard_normal((min(65536, n - s), dim), dtype=np.float32)
        if centers is not None:
            block = centers[rng.integers(len(centers), size=len(block))] + 0.6 * block
        out[s : s + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--kind", choices=("ivf", "hnsw"), default="ivf")
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
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, faiss {faiss.__version__}, "
        f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"data: {args.n:,} x {args.dim} {'clustered' if args.clustered else 'uniform random'} unit vectors, "
        f"{args.queries} queries, top-10"
    )
    t0 = time.perf_counter()
    vectors = make_vectors(args.n, args.dim, 0, args.clustered)
    queries = make_vectors(args.queries, args.dim, 1, args.clustered)
    print(f"generated in {time.perf_counter() - t0:.1f} s")

    t0 = time.perf_counter()
    _, truth = exact_top_k(vectors, queries, 10)
    exact_batch = time.perf_counter() - t0
    t0 = time.perf_counter()
    for q in queries[:10]:
        exact_top_k(vectors, q[None], 10)
    exact_single = (time.perf_counter() - t0) / 10

    rows = [IndexRow(f"/f{i}.wav") for i in range(args.n)]
    t0 = time.perf_counter()
    index = SearchIndex(
        vectors,
        rows,
        approximate_threshold=1,
        approximate=args.kind,
        hnsw_m=args.m,
        ef_construction=args.ef_construction,
    )
    build = time.perf_counter() - t0
    assert index.kind == args.kind
    what = (
        f"M={args.m}, efConstruction={args.ef_construction}"
        if args.kind == "hnsw"
        else f"nlist={index.nlist}"
    )
    print(f"{args.kind} build ({what}): {build:.1f} s, peak RSS so far {peak_rss_gb():.1f} GB")

    print()
    print(f"| search | recall@10 | ms / query (one at a time) | ms / query (batch of {args.queries}) |")
    print("|---|---|---|---|")
    print(
        f"| exact (numpy, chunked) | 1.000 | {1000 * exact_single:.1f} | {1000 * exact_batch / args.queries:.2f} |"
    )
    settings = args.ef_search if args.kind == "hnsw" else [p for p in args.nprobe if p <= index.nlist]
    for value in settings:
        if args.kind == "hnsw":
            index.ef_search, label = value, f"HNSW efSearch={value}"
        else:
            index.nprobe, label = value, f"IVF nprobe={value}/{index.nlist}"
        t0 = time.perf_counter()
        batch = index.search(queries, 10, unique_files=False)
        batch_t = time.perf_counter() - t0
        t0 = time.perf_counter()
        for q in queries[:50]:
            index.search(q, 10, unique_files=False)
        single_t = (time.perf_counter() - t0) / 50
        recall = np.mean([len({h.row for h in hits} & set(t.tolist())) / 10 for hits, t in zip(batch, truth)])
        print(f"| {label} | {recall:.3f} | {1000 * single_t:.2f} | {1000 * batch_t / args.queries:.2f} |")
    print()
    print(
        f"peak RSS {peak_rss_gb():.1f} GB (vectors alone: {vectors.nbytes / 1024**3:.1f} GB, held twice: ours + FAISS's)"
    )


if __name__ == "__main__":
    main()
