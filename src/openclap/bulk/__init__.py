"""Bulk embedding of large collections: parallel decoding, batched model calls, resumable chunks."""

from openclap.bulk.job import (
    EmbedOptions,
    EmbedReport,
    collect_inputs,
    count_failure,
    embed_to_arrays,
    model_fingerprint,
    parse_shard,
    run_embed_job,
    save_npz,
)
from openclap.bulk.store import ChunkStore, EmbeddingTable, Row, merge_outputs

__all__ = [
    "ChunkStore",
    "EmbedOptions",
    "EmbedReport",
    "EmbeddingTable",
    "Row",
    "collect_inputs",
    "count_failure",
    "embed_to_arrays",
    "merge_outputs",
    "model_fingerprint",
    "parse_shard",
    "run_embed_job",
    "save_npz",
]
