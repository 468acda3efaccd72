"""The server's settings and limits: one frozen record, checked once, read by the app and the CLI.

Every limit a client can run into is here, with its default; README's "Serving" section states the
policy and ``/metrics`` exports the values (``bninception_limit{name=...}``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields
from typing import Any

from bninception.core.errors import BninceptionError

MIB = 1 << 20
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # a model name: one URL path segment, one file name


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
    max_delay_ms: float = 0.0  # how long the oldest request may wait for a fuller batch (0: batch what is queued)
    max_queue: int = 256  # requests waiting before 503
    workers: int = 1  # batcher threads
    request_timeout_s: float = 30.0  # queue + inference, then 504
    # -- limits on what one client may hold or send (README: "Limits") ---------------------------
    max_header_bytes: int = 32 * 1024  # request line + headers, then 431
    max_headers: int = 100  # header fields, then 431
    max_body_bytes: int | None = None  # infer body; None: enough for max_batch rows as JSON; then 413
    max_image_bytes: int = 32 * MIB  # /v1/classify body, then 413
    max_image_pixels: int = 64_000_000  # decoded pixels of one image (core.preprocess's cap), then 413
    decode_memory_mb: int = 1024  # all image decodes at once; a decode waits for room, one larger is 413
    buffer_memory_mb: int = 1024  # request bodies buffered at once, all connections together, then 503
    max_connections: int = 512  # open connections + running requests (uvicorn limit_concurrency), then 503
    read_timeout_s: float = 10.0  # a whole request (headers and body) from its first byte, then 408
    keep_alive_s: float = 5.0  # an idle connection (before its first request too), then closed
    graceful_shutdown_s: float = 15.0  # SIGTERM: running requests get this long, then are cancelled

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise BninceptionError(f"{item.name.replace('_', '-')} must be a finite number, got {value}")
        if not NAME.match(self.model_name):
            raise BninceptionError(f"model name {self.model_name[:64]!r} must be 1-64 letters, digits, '_', '.' or '-' "
                                   "(it appears in URLs and paths)")
        problems = [name for name, ok in (
            ("max-batch >= 1", self.max_batch >= 1), ("max-queue >= 1", self.max_queue >= 1),
            ("max-delay-ms >= 0", self.max_delay_ms >= 0), ("timeout-s > 0", self.request_timeout_s > 0),
            ("workers >= 1", self.workers >= 1), ("threads >= 0", self.threads >= 0),
            ("max-body-bytes >= 1", self.max_body_bytes is None or self.max_body_bytes >= 1),
            ("max-header-bytes >= 1024", self.max_header_bytes >= 1024), ("max-headers >= 8", self.max_headers >= 8),
            ("max-image-bytes >= 1", self.max_image_bytes >= 1), ("max-image-pixels >= 1", self.max_image_pixels >= 1),
            ("decode-memory-mb >= 1", self.decode_memory_mb >= 1),
            ("buffer-memory-mb >= 1", self.buffer_memory_mb >= 1),
            ("max-connections >= 1", self.max_connections >= 1), ("read-timeout-s > 0", self.read_timeout_s > 0),
            ("keep-alive-s > 0", self.keep_alive_s > 0), ("graceful-shutdown-s > 0", self.graceful_shutdown_s > 0),
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
