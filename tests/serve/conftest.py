"""Servers on 127.0.0.1 for the serve/ tests, one per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def serve_server(serve_model_path: Path) -> Iterator[Any]:
    """The app served on 127.0.0.1, an ephemeral port, for the whole session."""
    from serve_helpers import start_in_thread

    from bninception.serve.app import create_app

    app = create_app(serve_model_path, max_batch=32, max_delay_ms=20, max_queue=256,
                     max_body_bytes=2 << 20)
    server = start_in_thread(app)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def serve_tight_server(serve_model_path: Path) -> Iterator[Any]:
    """A server with small limits and short timeouts (the hardening tests run into them)."""
    from serve_helpers import start_in_thread

    from bninception.serve.app import create_app

    app = create_app(serve_model_path, max_batch=8, max_delay_ms=1, max_body_bytes=1 << 20, keep_alive_s=1.0,
                     read_timeout_s=1.0, decode_memory_mb=16, max_image_pixels=20_000_000, max_header_bytes=8192,
                     max_headers=32)
    server = start_in_thread(app)
    try:
        yield server
    finally:
        server.stop()
