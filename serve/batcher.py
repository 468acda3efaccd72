"""Dynamic batching: concurrent requests merged up to ``max_batch`` rows within ``max_delay``.

Requests enter a bounded queue. A worker thread takes the oldest request, waits until either
``max_batch`` rows are queued or the oldest has waited ``max_delay_s``, concatenates what fits,
runs it once (ONNX Runtime releases the GIL) and hands each request its slice of the output.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

BatchObserver = Callable[[int, int, float], None]  # (rows, requests, seconds)


class QueueFull(Exception):
    """The queue holds ``max_queue`` requests already: the caller should retry later."""


class BatcherClosed(Exception):
    """The batcher has been shut down."""


@dataclass
class _Item:
    rows: np.ndarray
    future: Future[np.ndarray]
    enqueued: float = field(default_factory=time.monotonic)


class DynamicBatcher:
    """Merge concurrent ``submit`` calls into runs of ``run(batch) -> outputs`` (first axis = rows).

    ``batching=False`` runs every request on its own (the baseline the benchmark compares with).
    """

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], max_batch: int = 32,
                 max_delay_s: float = 0.005, max_queue: int = 256, batching: bool = True,
                 workers: int = 1, observer: BatchObserver | None = None) -> None:
        if max_batch < 1 or max_queue < 1 or workers < 1 or max_delay_s < 0:
            raise ValueError("max_batch, max_queue and workers must be >= 1, max_delay_s >= 0")
        self.run = run
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self.max_queue = max_queue
        self.batching = batching
        self.observer = observer
        self._queue: deque[_Item] = deque()
        self._rows_queued = 0
        self._cond = threading.Condition()
        self._closed = False
        self._threads = [threading.Thread(target=self._loop, name=f"bninception-batcher-{i}", daemon=True)
                         for i in range(workers)]
        for thread in self._threads:
            thread.start()

    @property
    def depth(self) -> int:
        """Requests waiting (not yet taken into a batch)."""
        return len(self._queue)

    def submit(self, rows: np.ndarray) -> Future[np.ndarray]:
        """Queue ``rows`` (batch axis first); the future resolves to the matching output rows."""
        if not 1 <= len(rows) <= self.max_batch:
            raise ValueError(f"a request must have 1..{self.max_batch} rows, got {len(rows)}")
        item = _Item(rows, Future())
        with self._cond:
            if self._closed:
                raise BatcherClosed("the server is shutting down")
            if len(self._queue) >= self.max_queue:
                raise QueueFull(f"queue full ({self.max_queue} requests waiting)")
            self._queue.append(item)
            self._rows_queued += len(rows)
            # Wake a worker only when it has something to do: a first item, or a full batch.
            if len(self._queue) == 1 or self._rows_queued >= self.max_batch or not self.batching:
                self._cond.notify()
        return item.future

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
            if self.batching:
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
                if not item.future.set_running_or_notify_cancel():
                    continue  # the caller gave up (timeout) while it waited
                batch.append(item)
                rows += len(item.rows)
                if not self.batching:
                    break
            if self._queue:
                self._cond.notify()  # leftovers: let another worker start on them
            return batch

    def _loop(self) -> None:
        while True:
            batch = self._collect()
            if batch is None:
                return
            if batch:
                self._execute(batch)

    def _execute(self, batch: list[_Item]) -> None:
        inputs = batch[0].rows if len(batch) == 1 else np.concatenate([i.rows for i in batch], axis=0)
        start = time.perf_counter()
        try:
            outputs = self.run(inputs)
        except Exception as exc:  # hand the failure to every waiting request
            for item in batch:
                item.future.set_exception(exc)
            return
        seconds = time.perf_counter() - start
        offset = 0
        for item in batch:
            count = len(item.rows)
            item.future.set_result(outputs[offset:offset + count])
            offset += count
        if self.observer is not None:
            self.observer(len(inputs), len(batch), seconds)
