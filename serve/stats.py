"""Per-model inference statistics in the shape of Triton's statistics extension; durations in nanoseconds."""

from __future__ import annotations

import threading
import time
from typing import Any

PHASES = ("compute_input", "compute_infer", "compute_output")


class ModelStatistics:
    def __init__(self, name: str, version: str) -> None:
        self.name, self.version = name, version
        self._lock = threading.Lock()
        self._durations: dict[str, list[int]] = {key: [0, 0] for key in ("success", "fail", "queue", *PHASES)}
        self._batches: dict[int, dict[str, list[int]]] = {}
        self.inference_count = self.execution_count = self.last_inference_ms = 0

    def _add(self, key: str, count: int, ns: int, table: dict[str, list[int]] | None = None) -> None:
        entry = (self._durations if table is None else table)[key]
        entry[0] += count
        entry[1] += ns

    def request(self, ok: bool, seconds: float) -> None:
        """One request answered (``ok``) or failed, ``seconds`` after it arrived."""
        with self._lock:
            self._add("success" if ok else "fail", 1, int(seconds * 1e9))

    def batch(self, rows: int, queued_s: list[float], phases_s: tuple[float, float, float]) -> None:
        """One batch of ``rows`` rows from ``len(queued_s)`` requests that waited ``queued_s`` each."""
        ns = [int(s * 1e9) for s in phases_s]
        with self._lock:
            requests = len(queued_s)
            self._add("queue", requests, int(sum(queued_s) * 1e9))
            table = self._batches.setdefault(rows, {key: [0, 0] for key in PHASES})
            for key, value in zip(PHASES, ns, strict=True):
                self._add(key, requests, value * requests)
                self._add(key, 1, value, table)
            self.inference_count += rows
            self.execution_count += 1
            self.last_inference_ms = int(time.time() * 1000)

    def to_dict(self) -> dict[str, Any]:
        """One ``model_stats`` entry of ``GET /v2/models/NAME/stats`` (and gRPC ModelStatistics)."""
        def duration(entry: list[int]) -> dict[str, int]:
            return {"count": entry[0], "ns": entry[1]}

        with self._lock:
            return {"name": self.name, "version": self.version, "last_inference": self.last_inference_ms,
                    "inference_count": self.inference_count, "execution_count": self.execution_count,
                    "inference_stats": {key: duration(value) for key, value in self._durations.items()},
                    "batch_stats": [{"batch_size": size, **{key: duration(v) for key, v in table.items()}}
                                    for size, table in sorted(self._batches.items())]}
