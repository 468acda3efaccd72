"""Triton's extensions as tritonclient drives them, on HTTP and gRPC: model configuration, statistics,
the model repository and system shared memory (inputs read from and outputs written to regions)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
import tritonclient.utils.shared_memory as shm
from serve_helpers import digits_images
from tritonclient.utils import InferenceServerException

MODEL = "bninception"


@pytest.fixture(scope="module")
def server(serve_model_path: Path) -> Iterator[Any]:
    from serve_helpers import start_in_thread

    from bninception.serve.app import create_app

    with start_in_thread(create_app(serve_model_path, max_batch=8), grpc_port=0) as running:
        yield running


@pytest.fixture(params=["http", "grpc"])
def client(request: pytest.FixtureRequest, server: Any) -> Iterator[Any]:
    module = thttp if request.param == "http" else tgrpc
    url = f"127.0.0.1:{server.port if request.param == 'http' else server.grpc_port}"
    c = module.InferenceServerClient(url)
    c.protocol = module  # type: ignore[attr-defined]
    yield c
    c.close()


def as_json(client: Any, call: str, *args: Any) -> Any:
    method = getattr(client, call)
    return method(*args) if client.protocol is thttp else method(*args, as_json=True)


def test_config_statistics_and_repository(client: Any, serve_reference: Any) -> None:
    config = as_json(client, "get_model_config", MODEL)
    config = config.get("config", config)  # gRPC wraps it in {"config": ...}
    assert config["name"] == MODEL and int(config["max_batch_size"]) == 8
    assert config["input"][0]["dims"] in ([1, 32, 32], ["1", "32", "32"])
    assert [o["name"] for o in config["output"]] == ["logits", "probabilities"]
    before = as_json(client, "get_inference_statistics", MODEL)["model_stats"][0]
    x = digits_images(3, seed=7)
    tensor = client.protocol.InferInput("data", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    result = client.infer(MODEL, [tensor])
    np.testing.assert_allclose(result.as_numpy("logits"), serve_reference(x), atol=1e-5)
    after = as_json(client, "get_inference_statistics", MODEL)["model_stats"][0]
    assert int(after["inference_count"]) - int(before.get("inference_count", 0)) == 3
    success = after["inference_stats"]["success"]
    assert int(success["count"]) - int(before["inference_stats"]["success"].get("count", 0)) == 1
    assert int(success["ns"]) > 0 and any(int(b["batch_size"]) == 3 for b in after["batch_stats"])
    assert as_json(client, "get_inference_statistics")["model_stats"][0]["name"] == MODEL
    index = as_json(client, "get_model_repository_index")
    models = index if isinstance(index, list) else index["models"]
    assert models == [{"name": MODEL, "version": "1", "state": "READY"}] or \
        models == [{"name": MODEL, "version": "1", "state": "READY", "reason": ""}]
    client.load_model(MODEL)
    with pytest.raises(InferenceServerException, match="cannot be unloaded"):
        client.unload_model(MODEL)
    with pytest.raises(InferenceServerException, match="unknown model 'resnet'"):
        client.get_inference_statistics("resnet")


def test_system_shared_memory_round_trip(client: Any, serve_reference: Any, request: pytest.FixtureRequest) -> None:
    tag = request.node.callspec.id
    x = digits_images(2, seed=9)
    handles = [shm.create_shared_memory_region(f"in-{tag}", f"/bni_in_{tag}", x.nbytes + 16),
               shm.create_shared_memory_region(f"out-{tag}", f"/bni_out_{tag}", 2 * 10 * 4)]
    try:
        shm.set_shared_memory_region(handles[0], [x], offset=16)
        client.register_system_shared_memory(f"in-{tag}", f"/bni_in_{tag}", x.nbytes + 16)
        client.register_system_shared_memory(f"out-{tag}", f"/bni_out_{tag}", 80)
        status = as_json(client, "get_system_shared_memory_status")
        names = [r["name"] for r in status] if isinstance(status, list) else list(status["regions"])
        assert sorted(names) == [f"in-{tag}", f"out-{tag}"]
        tensor = client.protocol.InferInput("data", list(x.shape), "FP32")
        tensor.set_shared_memory(f"in-{tag}", x.nbytes, offset=16)
        output = client.protocol.InferRequestedOutput("logits")
        output.set_shared_memory(f"out-{tag}", 80)
        result = client.infer(MODEL, [tensor], outputs=[output])
        assert result.get_output("logits") is not None
        logits = shm.get_contents_as_numpy(handles[1], np.float32, [2, 10])
        np.testing.assert_allclose(logits, serve_reference(x), atol=1e-5)
        # out of bounds, unknown region, a region too small for the output: clear errors, nothing breaks
        tensor.set_shared_memory(f"in-{tag}", x.nbytes, offset=64)
        with pytest.raises(InferenceServerException, match="outside its"):
            client.infer(MODEL, [tensor], outputs=[output])
        tensor.set_shared_memory("nowhere", x.nbytes)
        with pytest.raises(InferenceServerException, match="unknown shared-memory region 'nowhere'"):
            client.infer(MODEL, [tensor], outputs=[output])
        with pytest.raises(InferenceServerException, match="not a plain name"):
            client.register_system_shared_memory(f"bad-{tag}", "/../etc/passwd", 8)
        with pytest.raises(InferenceServerException, match="already registered"):
            client.register_system_shared_memory(f"in-{tag}", f"/bni_in_{tag}", 8)
    finally:
        client.unregister_system_shared_memory()
        for handle in handles:
            shm.destroy_shared_memory_region(handle)
    status = as_json(client, "get_system_shared_memory_status")
    assert not (status if isinstance(status, list) else status.get("regions"))


def test_a_region_that_shrank_is_an_error_not_a_crash(tmp_path: Path) -> None:
    import os

    from bninception.serve.protocol import ProtocolError
    from bninception.serve.shm import SharedMemory

    regions = SharedMemory()
    handle = shm.create_shared_memory_region("r", "/bni_shrink", 64)
    try:
        regions.register("r", "/bni_shrink", 0, 64)
        assert regions.read("r", 0, 8) == b"\0" * 8
        os.truncate("/dev/shm/bni_shrink", 16)
        with pytest.raises(ProtocolError, match="shrank or vanished"):
            regions.read("r", 0, 32)
    finally:
        regions.close()
        shm.destroy_shared_memory_region(handle)
