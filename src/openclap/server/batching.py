"""Micro-batching: requests that arrive together share one model call.

A ``Batcher`` owns one worker thread. ``submit(item)`` returns a ``concurrent.futures.Future``; the
worker takes the first waiting item, collects more for up to ``max_wait`` seconds (or until
``max_items``), runs ``fn(items) -> results`` once and resolves each future with its result.

One bad item must not fail its companions: if ``fn`` raises on a batch of several items, each item is
run again on its own, so only the items that raise on their own get the exception.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

logger = logging.getLogger(__name__)


class Batcher:
    """Collects items submitted from many threads/tasks and processes them in batches."""

    def __init__(
        self,
        fn: Callable[[Sequence[Any]], Sequence[Any]],
        max_items: int = 16,
        max_wait: float = 0.01,
        name: str = "batcher",
    ) -> None:
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items}")
        self.fn = fn
        self.max_items = max_items
        self.max_wait = max_wait
        self.batches = 0  # model calls made (for tests and /health)
        self.items = 0
        self._queue: queue.Queue[tuple[Any, Future] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: Any) -> Future:
        """Queue ``item``; the future resolves to ``fn``'s result for it."""
        fut: Future = Future()
        self._queue.put((item, fut))
        return fut

    def close(self) -> None:
        """Stop the worker after the queued items are done."""
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + self.max_wait
            stop = False
            while len(batch) < self.max_items:
                remaining = deadline - time.monotonic()
                try:
                    nxt = (
                        self._queue.get(timeout=max(remaining, 0.0))
                        if remaining > 0
                        else self._queue.get_nowait()
                    )
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            self._run(batch)
            if stop:
                return

    def _call(self, items: list[Any]) -> Sequence[Any]:
        results = self.fn(items)
        if len(results) != len(items):
            raise RuntimeError(f"batch function returned {len(results)} results for {len(items)} items")
        self.batches += 1
        self.items += len(items)
        return results

    def _run(self, batch: list[tuple[Any, Future]]) -> None:
        try:
            results = self._call([item for item, _ in batch])
        except Exception as exc:  # noqa: BLE001 - any error: isolate it to the item that causes it
            if len(batch) == 1:
                logger.info("batch item failed: %s", exc)
                batch[0][1].set_exception(exc)
                return
            logger.info("batch of %d items failed (%s); retrying them one by one", len(batch), exc)
            for one in batch:
                self._run([one])
            return
        for (_, fut), res in zip(batch, results):
            fut.set_result(res)
