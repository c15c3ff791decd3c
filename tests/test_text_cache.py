"""The one text-embedding cache (pipeline prompts, HTTP service labels): bounded, least recently used out."""

from __future__ import annotations

import numpy as np
import pytest

import openclap
from openclap.text.cache import TextEmbeddingCache


def _vec(x: float) -> np.ndarray:
    return np.full(3, x, dtype=np.float32)


def test_least_recently_used_entry_is_evicted() -> None:
    cache = TextEmbeddingCache(max_items=2)
    cache.store({"a": _vec(1), "b": _vec(2)})
    assert list(cache.lookup(["a"])) == ["a"]  # a is now the most recently used
    cache.store({"c": _vec(3)})
    assert len(cache) == 2
    found = cache.lookup(["a", "b", "c"])
    assert sorted(found) == ["a", "c"]  # b, the least recently used, went
    np.testing.assert_array_equal(found["a"], _vec(1))
    np.testing.assert_array_equal(found["c"], _vec(3))


def test_store_refreshes_a_value_and_its_recency() -> None:
    cache = TextEmbeddingCache(max_items=2)
    cache.store({"a": _vec(1), "b": _vec(2)})
    cache.store({"a": _vec(9)})  # a refreshed: b is now the oldest
    cache.store({"c": _vec(3)})
    found = cache.lookup(["a", "b", "c"])
    assert sorted(found) == ["a", "c"]
    np.testing.assert_array_equal(found["a"], _vec(9))


def test_max_items_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_items"):
        TextEmbeddingCache(max_items=0)


def test_pipeline_cached_prompts_equal_fresh_embeddings() -> None:
    """classify's cached prompt embeddings are the prompts' own, in the order asked, across calls."""
    pipe = openclap.load("openclap-mini")
    pipe._text_cache = TextEmbeddingCache(max_items=2)  # small: the second call evicts and recomputes
    first = pipe._cached_text(["dog", "rain", "dog"])
    second = pipe._cached_text(["siren", "rain", "dog"])
    fresh = pipe.embed_text(["dog", "rain", "dog", "siren", "rain", "dog"])
    np.testing.assert_allclose(np.concatenate([first, second]), fresh, atol=1e-6)
    assert len(pipe._text_cache) == 2
