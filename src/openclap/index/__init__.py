"""Search indexes over audio embeddings: exact or FAISS (size-chosen IVF-SQ8, IVF, HNSW), text-to-audio and audio-to-audio."""

from openclap.index.builder import (
    add_files,
    build_index_from_embeddings,
    build_index_from_files,
    check_model,
    load_pipeline_for,
)
from openclap.index.search_index import IndexPlan, IndexRow, SearchHit, SearchIndex, exact_top_k, plan_index

__all__ = [
    "IndexPlan",
    "IndexRow",
    "SearchHit",
    "SearchIndex",
    "add_files",
    "build_index_from_embeddings",
    "build_index_from_files",
    "check_model",
    "exact_top_k",
    "load_pipeline_for",
    "plan_index",
]
