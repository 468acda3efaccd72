"""The server's settings and limits: one frozen record whose fields also make the CLI options and gauges."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any

from bninception.core.errors import BninceptionError
from bninception.core.settings import check_settings, setting

MIB = 1 << 20
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # a model name: one URL path segment, one file name


@dataclass(frozen=True)
class ServeConfig:
    """Everything ``bninception serve`` can set; its options and their defaults are made from these fields."""

    model_name: str = setting("bninception", "model name in the URL", flag="name")
    providers: tuple[str, ...] | None = None  # user names (cpu, openvino, cuda, tensorrt); None: CPU
    optimization: str = setting("all", "ONNX Runtime graph optimization level",
                                choices=("disable", "basic", "extended", "all"))
    threads: int = setting(0, "ONNX Runtime intra-op threads; 0: the container's CPU quota (or affinity mask), else "
                                 "ONNX Runtime's default", low=0)
    spinning: bool = setting(False, "let idle ONNX Runtime threads busy-wait (off: the event loop shares the "
                                    "cores)", flag="spin")
    batching: bool = setting(True, "merge concurrent requests into batches (--no-batching: one by one)")
    max_batch: int = setting(32, "rows per merged batch", low=1)
    max_delay_ms: float = setting(0.0, "how long the oldest request may wait for a fuller batch; 0: a free model "
                                       "takes what is queued at once", low=0)
    max_queue: int = setting(256, "requests waiting, then 503", low=1)
    workers: int = setting(1, "batcher threads", low=1)
    request_timeout_s: float = setting(30.0, "queue + inference, then 504", low=0, above=True, flag="timeout-s")
    # -- limits on what one client may hold or send (README: "Limits") ---------------------------
    max_header_bytes: int = setting(32 * 1024, "request line + headers, then 431 (the HTTP server's read buffer)",
                                    low=8192)
    max_headers: int = setting(100, "header fields, then 431 (at most 100: the HTTP server's own cap)", low=8,
                               high=100)
    max_body_bytes: int | None = setting(None, "infer body, then 413 (default: enough for max-batch rows as JSON)",
                                         low=1)
    max_image_bytes: int = setting(32 * MIB, "/v1/classify body, then 413", low=1)
    max_image_pixels: int = setting(64_000_000, "decoded pixels of one image, then 413", low=1)
    decode_memory_mb: int = setting(1024, "memory for all image decodes at once; one larger is 413", low=1)
    buffer_memory_mb: int = setting(1024, "request bodies buffered at once, all connections, then 503", low=1)
    max_connections: int = setting(512, "HTTP requests running at once (more wait to be accepted); gRPC "
                                        "connections, then refused", low=1)
    read_timeout_s: float = setting(10.0, "an HTTP request head, then its body, must each arrive within this "
                                          "(the head: closed; the body: 408); an idle HTTP connection is "
                                          "closed after it", low=0, above=True)
    keep_alive_s: float = setting(5.0, "close a gRPC connection idle this long", low=0, above=True)
    graceful_shutdown_s: float = setting(15.0, "on SIGTERM, running requests get this long", low=0, above=True)

    def __post_init__(self) -> None:
        check_settings(self, "server settings")
        if not NAME.match(self.model_name):
            raise BninceptionError(f"model name {self.model_name[:64]!r} must be 1-64 letters, digits, '_', '.' or '-' "
                                   "(it appears in URLs and paths)")

    def with_overrides(self, **values: Any) -> ServeConfig:
        """A copy with ``values`` replaced (unknown names are a clear error)."""
        from dataclasses import replace

        known = {f.name for f in fields(self)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise BninceptionError(f"unknown server setting(s): {', '.join(unknown)}")
        return replace(self, **values)
