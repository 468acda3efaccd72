"""Triton's own load generator against ``bninception serve`` (in `make docker-test`).

perf_analyzer 2.60 (its PyPI wheel, in a Debian trixie container: it needs glibc 2.38) runs with its
default options (random input data) over HTTP and gRPC, and with ``--shared-memory system`` (the
container shares the host's /dev/shm), against a server on 127.0.0.1; the server's statistics
extension then accounts for every inference. Bounded: count windows of 100 requests, 5 trials.

Skips, with the reason, only where no Docker engine can be started; under CI (CI=true) that fails.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import harness
import pytest

pytestmark = pytest.mark.timeout(1200)
BOUNDED = ("--measurement-mode", "count_windows", "--measurement-request-count", "100",
           "--stability-percentage", "100", "--max-trials", "5")


@pytest.fixture(scope="module")
def image() -> str:
    problem = harness.ensure_engine()
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"no Docker engine under CI: {problem}")
        pytest.skip(f"no Docker engine: {problem}")
    return harness.perf_analyzer_image()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from serve_helpers import export_classifier, start_in_thread

    from bninception.serve.app import create_app

    model = export_classifier(tmp_path_factory.mktemp("pa") / "model.onnx")
    with start_in_thread(create_app(model, max_batch=8), grpc_port=0) as running:
        yield running


def url(server: Any, protocol: str) -> str:
    return f"127.0.0.1:{server.port if protocol == 'http' else server.grpc_port}"


@pytest.mark.parametrize("shared_memory", [False, True], ids=["default", "shm-system"])
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_perf_analyzer_runs_with_its_defaults(image: str, server: Any, protocol: str, shared_memory: bool) -> None:
    import tritonclient.http as thttp

    client = thttp.InferenceServerClient(url(server, "http"))
    before = int(client.get_inference_statistics("bninception")["model_stats"][0]["inference_count"])
    extra = ("--shared-memory", "system") if shared_memory else ()
    rows, output = harness.perf_analyzer(url(server, protocol), protocol, *BOUNDED, *extra)
    assert rows[0].concurrency == 1 and rows[0].throughput > 0, output
    assert "Server:" in output and "compute infer" in output, output  # read from our statistics extension
    after = int(client.get_inference_statistics("bninception")["model_stats"][0]["inference_count"])
    assert after - before >= 100
    regions = client.get_system_shared_memory_status()
    assert regions == [], regions  # perf_analyzer unregistered what it registered
    client.close()
