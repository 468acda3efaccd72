"""Request bytes held at once, shared by every protocol (HTTP bodies, gRPC messages) across threads."""

from __future__ import annotations

import threading

from bninception.serve.protocol import ProtocolError


class BufferBudget:
    """A byte budget that holders on any thread take from without waiting; a request that does not fit
    is refused (503 over HTTP, RESOURCE_EXHAUSTED over gRPC) rather than queued."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self.peak = 0
        self._lock = threading.Lock()

    def try_take(self, size: int) -> bool:
        """Take ``size`` bytes if they fit now."""
        with self._lock:
            if self.used + size > self.capacity:
                return False
            self.used += size
            self.peak = max(self.peak, self.used)
            return True

    def take(self, size: int, what: str = "request bodies") -> None:
        """Take ``size`` bytes, or the 503 refusal that says the budget is spent."""
        if not self.try_take(size):
            raise self.refusal(what)

    def give(self, size: int) -> None:
        with self._lock:
            self.used -= size

    def refusal(self, what: str = "request bodies", status: int = 503) -> ProtocolError:
        """The one answer to a request that does not fit: 503 with Retry-After, the connection closed
        (gRPC: 429, answered RESOURCE_EXHAUSTED)."""
        return ProtocolError(status, f"server busy: {what} already hold {self.used >> 20} MiB of "
                                  f"{self.capacity >> 20} MiB; retry later",
                             {"Retry-After": "1", "Connection": "close"})
