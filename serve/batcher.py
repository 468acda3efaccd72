"""Dynamic batching: concurrent requests merged up to ``max_batch`` rows.

A free worker takes what is queued at once; ``max_delay_s`` > 0 lets the oldest request wait for a
fuller batch (Triton's ``max_queue_delay_microseconds``).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# (rows, seconds each request queued, seconds to (gather inputs, run, slice outputs))
BatchObserver = Callable[[int, list[float], tuple[float, float, float]], None]


class QueueFull(Exception):
    """The queue holds ``max_queue`` requests already: the caller should retry later."""


class BatcherClosed(Exception):
    """The batcher has been shut down."""


@dataclass
class _Item:
    rows: np.ndarray
    future: Future[np.ndarray] | asyncio.Future[np.ndarray]
    loop: asyncio.AbstractEventLoop | None = None  # set for submit_async
    enqueued: float = field(default_factory=time.monotonic)

    def claim(self) -> bool:
        """False when the caller gave up (timed out, went away) before the batch took it."""
        if self.loop is None:
            return self.future.set_running_or_notify_cancel()  # type: ignore[union-attr]
        return not self.future.done()


def _deliver(results: list[tuple[_Item, Any, BaseException | None]]) -> None:
    """In the event loop: resolve the asyncio futures of one batch (skipping those cancelled since)."""
    for item, value, error in results:
        future = item.future
        if future.done():
            continue
        if error is None:
            future.set_result(value)
        else:
            future.set_exception(error)


class DynamicBatcher:
    """Merge concurrent ``submit`` calls into runs of ``run(batch) -> outputs``; ``batching=False`` runs each alone."""

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], max_batch: int = 32,
                 max_delay_s: float = 0.0, max_queue: int = 256, batching: bool = True,
                 workers: int = 1, observer: BatchObserver | None = None) -> None:
        if max_batch < 1 or max_queue < 1 or workers < 1 or not 0 <= max_delay_s < math.inf:
            raise ValueError("max_batch, max_queue and workers must be >= 1, max_delay_s finite and >= 0")
        self.run = run
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self.max_queue = max_queue
        self.batching = batching
        self.observer = observer
        self._queue: deque[_Item] = deque()
        self._rows_queued = 0
        self._cond = threading.Condition(threading.Lock())
        self._closed = False
        self._running_since: dict[int, float] = {}  # worker index -> start of the batch it runs
        self._failure: str | None = None
        self._threads = [threading.Thread(target=self._loop, args=(i,), name=f"bninception-batcher-{i}",
                                          daemon=True) for i in range(workers)]
        for thread in self._threads:
            thread.start()

    @property
    def depth(self) -> int:
        """Requests waiting (not yet taken into a batch)."""
        return len(self._queue)

    def health(self, stall_s: float) -> str | None:
        """None while the batcher serves; else why not (closed, a worker died, or no progress for
        ``stall_s``: the oldest request waited, or one batch ran, that long)."""
        if self._closed:
            return "the batcher is shut down"
        if self._failure is not None or not all(t.is_alive() for t in self._threads):
            return f"a batcher worker stopped: {self._failure or 'thread exited'}"
        now = time.monotonic()
        queue = self._queue
        oldest = queue[0].enqueued if queue else now
        running = min(self._running_since.values(), default=now)
        waited = now - min(oldest, running)
        if waited > stall_s:
            return f"the batcher made no progress for {waited:.1f} s"
        return None

    def _enqueue(self, item: _Item) -> None:
        if not 1 <= len(item.rows) <= self.max_batch:
            raise ValueError(f"a request must have 1..{self.max_batch} rows, got {len(item.rows)}")
        with self._cond:
            if self._closed:
                raise BatcherClosed("the server is shutting down")
            if len(self._queue) >= self.max_queue:
                raise QueueFull(f"queue full ({self.max_queue} requests waiting)")
            self._queue.append(item)
            self._rows_queued += len(item.rows)
            # Wake a worker only when it has something to do: a first item, or a full batch.
            if len(self._queue) == 1 or self._rows_queued >= self.max_batch or not self.batching:
                self._cond.notify()

    def submit(self, rows: np.ndarray) -> Future[np.ndarray]:
        """Queue ``rows`` (batch axis first); the future resolves to the matching output rows."""
        item = _Item(rows, Future())
        self._enqueue(item)
        return item.future  # type: ignore[return-value]

    def submit_async(self, rows: np.ndarray) -> asyncio.Future[np.ndarray]:
        """``submit`` from a running event loop: an asyncio future, resolved in that loop."""
        loop = asyncio.get_running_loop()
        item = _Item(rows, loop.create_future(), loop)
        self._enqueue(item)
        return item.future  # type: ignore[return-value]

    def close(self, timeout: float = 5.0) -> None:
        """Stop the workers after the queued requests have run."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout)

    # -- worker -------------------------------------------------------------------------------
    def _collect(self) -> list[_Item] | None:
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if not self._queue:
                return None
            if self.batching and self.max_delay_s > 0:
                deadline = self._queue[0].enqueued + self.max_delay_s
                while self._rows_queued < self.max_batch and not self._closed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not self._queue:
                        break
                    self._cond.wait(remaining)
            batch: list[_Item] = []
            rows = 0
            while self._queue and rows + len(self._queue[0].rows) <= self.max_batch:
                item = self._queue.popleft()
                self._rows_queued -= len(item.rows)
                if not item.claim():
                    continue  # the caller gave up (timeout) while it waited
                batch.append(item)
                rows += len(item.rows)
                if not self.batching:
                    break
            if self._queue:
                self._cond.notify()  # leftovers: let another worker start on them
            return batch

    def _loop(self, index: int) -> None:
        try:
            while True:
                batch = self._collect()
                if batch is None:
                    return
                if batch:
                    self._running_since[index] = time.monotonic()
                    try:
                        self._execute(batch)
                    finally:
                        self._running_since.pop(index, None)
        except BaseException as exc:  # the thread ends: health() reports it, /v2/health/ready says 503
            self._failure = f"{type(exc).__name__}: {exc}"
            raise

    def _execute(self, batch: list[_Item]) -> None:
        began, start = time.monotonic(), time.perf_counter()
        inputs = batch[0].rows if len(batch) == 1 else np.concatenate([i.rows for i in batch], axis=0)
        gathered = time.perf_counter()
        try:
            outputs = self.run(inputs)
        except Exception as exc:  # hand the failure to every waiting request
            self._finish(batch, [None] * len(batch), exc)
            return
        except BaseException as exc:  # the worker ends (health() reports it); its requests fail now
            self._finish(batch, [None] * len(batch), RuntimeError(f"the batcher worker stopped: {exc!r}"))
            raise
        ran = time.perf_counter()
        slices = []
        offset = 0
        for item in batch:
            slices.append(outputs[offset:offset + len(item.rows)])
            offset += len(item.rows)
        if self.observer is not None:  # counted before any client hears its answer: statistics read after it
            with contextlib.suppress(Exception):  # metrics must never stop the worker
                self.observer(len(inputs), [began - item.enqueued for item in batch],
                              (gathered - start, ran - gathered, time.perf_counter() - ran))
        self._finish(batch, slices, None)

    @staticmethod
    def _finish(batch: list[_Item], values: list[Any], error: BaseException | None) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Item, Any, BaseException | None]]] = {}
        for item, value in zip(batch, values, strict=True):
            if item.loop is None:
                if error is None:
                    item.future.set_result(value)
                else:
                    item.future.set_exception(error)
            else:
                by_loop.setdefault(item.loop, []).append((item, value, error))
        for loop, results in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop has closed: nobody waits for these any more
                loop.call_soon_threadsafe(_deliver, results)
