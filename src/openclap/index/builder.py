"""Build and update search indexes from bulk-job outputs or straight from audio files."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from openclap.bulk.job import EmbedOptions, EmbedReport, collect_inputs, model_fingerprint, run_embed_job
from openclap.bulk.store import JOB_FILE, ChunkStore, EmbeddingTable
from openclap.index.search_index import DEFAULT_THRESHOLD, EMBED_DIR, IndexRow, SearchIndex

logger = logging.getLogger(__name__)


def is_embed_dir(path: str | os.PathLike) -> bool:
    """True for an ``openclap embed`` output directory."""
    return (Path(path) / JOB_FILE).is_file()


def roots_of(paths: Sequence[str]) -> list[str]:
    """The smallest set of folders holding every path (served audio must lie inside one)."""
    folders = sorted({str(Path(p).parent) for p in paths})
    roots: list[str] = []
    for f in folders:
        if not any(f == r or f.startswith(r.rstrip(os.sep) + os.sep) for r in roots):
            roots.append(f)
    return roots


def table_rows(table: EmbeddingTable) -> tuple[np.ndarray, list[IndexRow]]:
    """A bulk-job table as index vectors and rows."""
    rows = [IndexRow(r.path, r.window, r.start, r.end, r.duration, r.size, r.mtime_ns) for r in table.rows]
    return table.vectors, rows


def build_index_from_embeddings(
    embed_dir: str | os.PathLike,
    out: str | os.PathLike,
    approximate_threshold: int = DEFAULT_THRESHOLD,
    approximate: str = "auto",
) -> SearchIndex:
    """An index over every current row of an ``openclap embed`` output directory, saved to ``out``."""
    store = ChunkStore(embed_dir)
    job = store.job()
    table = store.read_table()
    vectors, rows = table_rows(table)
    info = {**job, "embed_dir": str(Path(embed_dir).resolve()), "roots": roots_of([r.path for r in rows])}
    index = SearchIndex(
        vectors, rows, info, approximate_threshold=approximate_threshold, approximate=approximate
    )
    index.save(out)
    return index


def build_index_from_files(
    pipeline,
    inputs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    options: EmbedOptions | None = None,
    approximate_threshold: int = DEFAULT_THRESHOLD,
    approximate: str = "auto",
    model_name: str | None = None,
    checkpoint: str | None = None,
) -> tuple[SearchIndex, EmbedReport]:
    """Embed files into ``out/embeddings`` (resumable) and index them."""
    options = options or EmbedOptions(pool="none")
    embed_dir = Path(out) / EMBED_DIR
    report = run_embed_job(pipeline, inputs, embed_dir, options, model_name=model_name, checkpoint=checkpoint)
    index = build_index_from_embeddings(embed_dir, out, approximate_threshold, approximate)
    roots = _input_roots(inputs)
    index.info["roots"] = sorted(set(index.info.get("roots", [])) | set(roots))
    index.save(out)
    return index, report


def _input_roots(inputs: Sequence[str | os.PathLike]) -> list[str]:
    roots = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            roots.append(str(p.resolve()))
    return roots


def check_model(index: SearchIndex, pipeline) -> None:
    """Refuse to query or extend an index with another model than the one that built it."""
    want = index.info.get("model_id")
    have = model_fingerprint(pipeline.model)
    if want and want != have:
        raise ValueError(
            f"the index was built with model {index.info.get('model')!r} (id {want}) but the loaded model "
            f"{pipeline.config.name!r} has id {have}; pass the index's model with --model/--checkpoint"
        )


def add_files(
    index_dir: str | os.PathLike,
    pipeline,
    inputs: Sequence[str | os.PathLike],
    options: EmbedOptions | None = None,
) -> tuple[SearchIndex, EmbedReport, int]:
    """Embed new or changed files and add them to the index in ``index_dir``; returns rows added."""
    index = SearchIndex.load(index_dir)
    check_model(index, pipeline)
    hop = index.info.get("hop_seconds")
    options = options or EmbedOptions(pool=index.info.get("pool", "none"), hop_seconds=hop)
    if options.pool != index.info.get("pool", options.pool):
        raise ValueError(f"the index uses --pool {index.info.get('pool')}, got {options.pool}")
    embed_dir = Path(index.info.get("embed_dir") or Path(index_dir) / EMBED_DIR)
    report = run_embed_job(
        pipeline,
        inputs,
        embed_dir,
        options,
        model_name=index.info.get("model"),
        checkpoint=index.info.get("checkpoint"),
    )
    wanted = set(collect_inputs(inputs))
    table = ChunkStore(embed_dir).read_table()
    current = {(r.path, r.size, r.mtime_ns) for r in index.rows if not r.deleted}
    take = [
        i
        for i, r in enumerate(table.rows)
        if r.path in wanted and (r.path, r.size, r.mtime_ns) not in current
    ]
    vectors, rows = table_rows(table)
    added = index.add(vectors[take], [rows[i] for i in take]) if take else 0
    index.info["roots"] = sorted(
        set(index.info.get("roots", []))
        | set(roots_of([rows[i].path for i in take]))
        | set(_input_roots(inputs))
    )
    index.info["embed_dir"] = str(embed_dir.resolve())
    index.save(index_dir)
    return index, report, added


def load_pipeline_for(
    index: SearchIndex,
    model: str | None = None,
    checkpoint: str | None = None,
    tokenizer: str | None = None,
    device: str = "cpu",
):
    """The model that built ``index`` (or the one given), checked against the index's model id."""
    import openclap

    name = model or index.info.get("model")
    if not name:
        raise ValueError("the index does not record its model; pass --model (and --checkpoint)")
    if checkpoint is None and model is None:
        checkpoint = index.info.get("checkpoint")
    pipeline = openclap.load(name, checkpoint=checkpoint, tokenizer=tokenizer, device=device)
    check_model(index, pipeline)
    return pipeline
