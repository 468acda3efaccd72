"""The server's Prometheus metrics, on ``prometheus_client`` with one registry per server (``/metrics``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServerMetrics:
    """Requests by status, latency, batch size, queue depth, refusals, and the gauges the parts add."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.requests = Counter("bninception_requests", "requests by endpoint and status code",
                                ["endpoint", "code"], registry=registry)
        self.latency = Histogram("bninception_request_latency_seconds", "request latency (inference endpoints)",
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
                                 registry=registry)
        self.batch_size = Histogram("bninception_batch_size", "rows per ONNX Runtime run (dynamic batching)",
                                    buckets=SIZES, registry=registry)
        self.batch_requests = Histogram("bninception_batch_requests", "requests merged into one ONNX Runtime run",
                                        buckets=SIZES, registry=registry)
        self.inference = Histogram("bninception_inference_seconds", "ONNX Runtime run time per batch",
                                   buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
                                   registry=registry)
        self.rejected = Counter("bninception_rejected", "requests refused by reason", ["reason"], registry=registry)

    def count(self, endpoint: str, code: int | str) -> None:
        self.requests.labels(endpoint=endpoint, code=str(code)).inc()

    def refused(self, reason: str) -> None:
        self.rejected.labels(reason=reason).inc()

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """A gauge read at scrape time from ``read`` (the part that owns the value)."""
        Gauge(name, help_text, registry=self.registry).set_function(read)

    def constants(self, name: str, help_text: str, values: Mapping[str, float], label: str = "name") -> None:
        gauge = Gauge(name, help_text, [label], registry=self.registry)
        for key, value in values.items():
            gauge.labels(**{label: key}).set(value)

    def render(self) -> bytes:
        return generate_latest(self.registry)
