"""Uploaded images -> network rows, within a memory budget shared by every decode at once.

The header gives an image's decode cost before any pixel is decoded. Small images decode at once on
a lane of their own; a large one waits for its cost from the shared budget (one above the whole budget
is refused), runs on a low-priority thread, and gives its heap pages back afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from bninception.core.errors import BninceptionError
from bninception.serve.protocol import ProtocolError

SMALL_DECODE_BYTES = 4 << 20  # below this an image decodes at once (LANE_THREADS at a time)
TRIM_AFTER_BYTES = 32 << 20  # decodes at least this large hand their freed heap back to the OS
LANE_THREADS = 2
LARGE_NICENESS = 10  # large decodes yield the CPU to inference and the event loop


class OverBudget(Exception):
    """One holder asked for more than the whole budget."""


class MemoryBudget:
    """Bytes that concurrent holders share, first come first served; for use on one event loop."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self.peak = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    def try_take(self, size: int) -> bool:
        """Take ``size`` bytes now if they fit (and nobody waits before us)."""
        if self._waiters or self.used + size > self.capacity:
            return False
        self._take(size)
        return True

    async def take(self, size: int, timeout_s: float) -> None:
        """Take ``size`` bytes, waiting at most ``timeout_s`` for room (then ``TimeoutError``)."""
        if size > self.capacity:
            raise OverBudget(f"needs {size} bytes, the budget is {self.capacity}")
        if self.try_take(size):
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (size, waiter)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout_s)
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.give(size)  # granted just as we gave up: hand it on
            else:
                waiter.cancel()
                self._waiters.remove(entry)
                self._wake()
            raise

    def give(self, size: int) -> None:
        self.used -= size
        self._wake()

    def _take(self, size: int) -> None:
        self.used += size
        self.peak = max(self.peak, self.used)

    def _wake(self) -> None:
        while self._waiters and self.used + self._waiters[0][0] <= self.capacity:
            size, waiter = self._waiters.popleft()
            if not waiter.done():
                self._take(size)
                waiter.set_result(None)


def _trim_heap() -> Callable[[], Any]:
    """glibc's ``malloc_trim(0)``: freed arena pages back to the OS (a no-op elsewhere)."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        trim = None
    return (lambda: trim(0)) if trim is not None else (lambda: None)


class ImageDecoder:
    """Decode uploads for one model's recorded preprocessing: bounded pixels, bounded memory."""

    def __init__(self, preprocess: Any, budget_bytes: int, max_pixels: int, threads: int | None = None) -> None:
        self.preprocess = preprocess
        self.budget = MemoryBudget(budget_bytes)
        self.max_pixels = max_pixels
        self.small = ThreadPoolExecutor(LANE_THREADS, thread_name_prefix="bninception-decode-small")
        self.large = ThreadPoolExecutor(threads or LANE_THREADS, thread_name_prefix="bninception-decode-large",
                                        initializer=_lower_priority)
        self._trim = _trim_heap()

    async def rows(self, data: bytes, timeout_s: float) -> np.ndarray:
        """The ``(1, C, H, W)`` network input for an uploaded image (ProtocolError on a bad one)."""
        from bninception.core.preprocess import decode_memory, open_image

        loop = asyncio.get_running_loop()
        try:
            image = await loop.run_in_executor(self.small, open_image, data, "uploaded image", 1 << 62)
        except BninceptionError as exc:
            raise ProtocolError(400, str(exc)) from None
        pixels = image.width * image.height
        if pixels > self.max_pixels:
            raise ProtocolError(413, f"uploaded image: {image.width}x{image.height} is more than the limit of "
                                     f"{self.max_pixels} pixels")
        need = decode_memory(image, self.preprocess.channel_order)
        if need < SMALL_DECODE_BYTES:
            try:
                return await loop.run_in_executor(self.small, self._decode, image, need)
            except BninceptionError as exc:
                raise ProtocolError(400, str(exc)) from None
        try:
            await self.budget.take(need, timeout_s)
        except OverBudget:
            raise ProtocolError(413, f"uploaded image: {image.width}x{image.height} {image.mode} needs "
                                     f"{need >> 20} MiB to decode, more than the decode budget of "
                                     f"{self.budget.capacity >> 20} MiB") from None
        except TimeoutError:
            raise ProtocolError(503, f"server busy decoding other images; no room for {need >> 20} MiB "
                                     f"within {timeout_s:g} s", {"Retry-After": "1"}) from None
        # The budget is given back when the decode ends, even if this request is cancelled first.
        job = self.large.submit(self._decode, image, need)
        job.add_done_callback(lambda _: loop.call_soon_threadsafe(self.budget.give, need))
        try:
            return await asyncio.wrap_future(job)
        except BninceptionError as exc:
            raise ProtocolError(400, str(exc)) from None

    def _decode(self, image: Any, need: int) -> np.ndarray:
        from bninception.core.preprocess import load_pixels

        try:
            return self.preprocess(load_pixels(image, "uploaded image"))[None]  # BninceptionError: a 400
        finally:
            image.close()  # frees the decoded pixels now, whoever still holds the object
            if need >= TRIM_AFTER_BYTES:
                self._trim()

    def close(self) -> None:
        for pool in (self.small, self.large):
            pool.shutdown(wait=False, cancel_futures=True)


def _lower_priority() -> None:
    """Raise this thread's niceness (Linux schedules threads on their own; elsewhere a no-op)."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LARGE_NICENESS)
