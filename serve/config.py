"""The server's settings and limits: one frozen record, checked once, read by the app and the CLI."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from bninception.core.errors import BninceptionError


@dataclass(frozen=True)
class ServeConfig:
    """Everything ``bninception serve`` can set; the CLI's defaults are these."""

    model_name: str = "bninception"
    providers: tuple[str, ...] | None = None  # user names (cpu, openvino, cuda, tensorrt); None: CPU
    optimization: str = "all"
    threads: int = 0  # ONNX Runtime intra-op threads (0: its default)
    spinning: bool = False  # idle ONNX Runtime threads busy-wait (off: the event loop shares the cores)
    batching: bool = True
    max_batch: int = 32  # rows per merged batch
    max_delay_ms: float = 5.0  # longest wait to fill a batch
    max_queue: int = 256  # requests waiting before 503
    workers: int = 1  # batcher threads
    request_timeout_s: float = 30.0
    max_body_bytes: int | None = None  # None: enough for max_batch rows as JSON

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise BninceptionError(f"{item.name.replace('_', '-')} must be a finite number, got {value}")
        problems = [name for name, ok in (
            ("max-batch >= 1", self.max_batch >= 1), ("max-queue >= 1", self.max_queue >= 1),
            ("max-delay-ms >= 0", self.max_delay_ms >= 0), ("timeout-s > 0", self.request_timeout_s > 0),
            ("workers >= 1", self.workers >= 1), ("threads >= 0", self.threads >= 0),
            ("max-body-bytes >= 1", self.max_body_bytes is None or self.max_body_bytes >= 1),
        ) if not ok]
        if problems:
            raise BninceptionError(f"server settings out of range: need {', '.join(problems)}")

    def with_overrides(self, **values: Any) -> ServeConfig:
        """A copy with ``values`` replaced (unknown names are a clear error)."""
        from dataclasses import replace

        known = {f.name for f in fields(self)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise BninceptionError(f"unknown server setting(s): {', '.join(unknown)}")
        return replace(self, **values)
