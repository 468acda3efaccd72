"""Prometheus text-format metrics without a dependency: counters, gauges, histograms.

Thread-safe (the batcher thread and the event loop both record), rendered by ``/metrics``.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable, Sequence

LabelKey = tuple[tuple[str, str], ...]


def _labels(key: LabelKey, extra: tuple[tuple[str, str], ...] = ()) -> str:
    pairs = key + extra
    if not pairs:
        return ""
    body = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)
    return "{" + body + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Counter:
    """A monotonically increasing count per label set."""

    def __init__(self, name: str, help_text: str) -> None:
        self.name, self.help = name, help_text
        self._values: dict[LabelKey, float] = {}
        self._lock = threading.Lock()

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        with self._lock:
            return self._values.get(tuple(sorted(labels.items())), 0.0)

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        with self._lock:
            lines += [f"{self.name}{_labels(k)} {_number(v)}" for k, v in sorted(self._values.items())]
        return lines


class Gauge:
    """A value read at render time from a callback (e.g. the queue depth)."""

    def __init__(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self.name, self.help, self.read = name, help_text, read

    def render(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} gauge",
                f"{self.name} {_number(self.read())}"]


class Constants:
    """Fixed values under one gauge name, one label each (the server's limits)."""

    def __init__(self, name: str, help_text: str, values: dict[str, float], label: str = "name") -> None:
        self.name, self.help, self.values, self.label = name, help_text, dict(values), label

    def render(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} gauge",
                *(f"{self.name}{_labels(((self.label, k),))} {_number(v)}" for k, v in sorted(self.values.items()))]


class Histogram:
    """Cumulative buckets, sum and count, as Prometheus expects."""

    def __init__(self, name: str, help_text: str, buckets: Sequence[float]) -> None:
        self.name, self.help = name, help_text
        self.bounds = sorted(float(b) for b in buckets)
        self._counts = [0] * (len(self.bounds) + 1)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(self.bounds, value)
        with self._lock:
            self._counts[index] += 1
            self._sum += value

    @property
    def count(self) -> int:
        with self._lock:
            return sum(self._counts)

    def bucket_counts(self) -> dict[float, int]:
        """Non-cumulative observation counts keyed by upper bound (``inf`` for the last)."""
        with self._lock:
            return dict(zip([*self.bounds, math.inf], self._counts, strict=True))

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        with self._lock:
            running = 0
            for bound, count in zip([*self.bounds, math.inf], self._counts, strict=True):
                running += count
                lines.append(f"{self.name}_bucket{_labels((), (('le', _number(bound)),))} {running}")
            lines.append(f"{self.name}_sum {_number(self._sum)}")
            lines.append(f"{self.name}_count {running}")
        return lines


class ServerMetrics:
    """The server's metrics: requests by status, latency, batch size, queue depth, refusals, limits."""

    def __init__(self, queue_depth: Callable[[], float]) -> None:
        self.requests = Counter("bninception_requests_total", "HTTP requests by endpoint and status code")
        self.latency = Histogram(
            "bninception_request_latency_seconds", "HTTP request latency (inference endpoints)",
            [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
        self.batch_size = Histogram(
            "bninception_batch_size", "rows per ONNX Runtime run (dynamic batching)",
            [1, 2, 4, 8, 16, 32, 64, 128, 256])
        self.batch_requests = Histogram(
            "bninception_batch_requests", "requests merged into one ONNX Runtime run",
            [1, 2, 4, 8, 16, 32, 64, 128, 256])
        self.inference = Histogram(
            "bninception_inference_seconds", "ONNX Runtime run time per batch",
            [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0])
        self.rejected = Counter("bninception_rejected_total", "requests refused by reason")
        self.queue_depth = Gauge("bninception_queue_depth", "requests waiting for a batch", queue_depth)
        self.extra: list[Gauge | Constants] = []

    def add(self, metric: Gauge | Constants) -> None:
        """Render ``metric`` too (gauges of the parts that own the values: decoder, connections, limits)."""
        self.extra.append(metric)

    def render(self) -> str:
        lines: list[str] = []
        for metric in (self.requests, self.latency, self.batch_size, self.batch_requests,
                       self.inference, self.rejected, self.queue_depth, *self.extra):
            lines += metric.render()
        return "\n".join(lines) + "\n"
