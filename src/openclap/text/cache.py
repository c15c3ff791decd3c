"""A bounded cache of text embeddings (prompts, labels), shared by the pipeline and the HTTP service."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping

import numpy as np


class TextEmbeddingCache:
    """Text -> embedding; beyond ``max_items`` the least recently used entries are evicted.

    ``lookup`` returns what is cached *now*; callers build their result from it plus what they compute,
    never by re-reading the cache after computing, because other callers (concurrent requests) may evict
    entries in between.
    """

    def __init__(self, max_items: int = 4096) -> None:
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items}")
        self.max_items = max_items
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def lookup(self, texts: Iterable[str]) -> dict[str, np.ndarray]:
        """The cached embeddings among ``texts`` (each marked as recently used)."""
        found = {}
        for text in dict.fromkeys(texts):
            if text in self._items:
                self._items.move_to_end(text)
                found[text] = self._items[text]
        return found

    def store(self, embeddings: Mapping[str, np.ndarray]) -> None:
        """Add or refresh entries, then evict the least recently used beyond ``max_items``."""
        for text, vector in embeddings.items():
            self._items[text] = vector
            self._items.move_to_end(text)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)
