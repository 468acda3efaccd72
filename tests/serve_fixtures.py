"""Session fixtures for the serve/ and Triton tests (``pytest_plugins = ["serve_fixtures"]``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from serve_helpers import export_classifier


@pytest.fixture(scope="session")
def serve_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_classifier(tmp_path_factory.mktemp("serve_model") / "model.folded.onnx")


@pytest.fixture(scope="session")
def serve_bare_model_path(tmp_path_factory: pytest.TempPathFactory, serve_model_path: Path) -> Path:
    """The same model with no bninception.* metadata_props."""
    import onnx

    proto = onnx.load(str(serve_model_path))
    del proto.metadata_props[:]
    path = tmp_path_factory.mktemp("serve_bare") / "model.onnx"
    onnx.save(proto, str(path))
    return path


@pytest.fixture(scope="session")
def serve_reference(serve_model_path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """In-process ONNX Runtime logits for a batch (the numbers the server must reproduce)."""
    from bninception.core.runner import OrtRunner

    return OrtRunner(str(serve_model_path)).run


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
