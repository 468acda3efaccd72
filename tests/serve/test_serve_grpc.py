"""KServe V2 gRPC beside HTTP, tested with tritonclient.grpc: health, metadata, ModelInfer parity with
in-process ONNX Runtime, the right status code for each bad request (and a good request after it)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
from serve_helpers import digits_images, infer_logits, metric_value
from tritonclient.utils import InferenceServerException

MODEL = "bninception"


@pytest.fixture(scope="module")
def grpc_server(serve_model_path: Path) -> Iterator[Any]:
    from serve_helpers import start_in_thread

    from bninception.serve.app import create_app

    app = create_app(serve_model_path, max_batch=8, max_delay_ms=20, max_body_bytes=1 << 20)
    with start_in_thread(app, grpc_port=0) as server:
        yield server


@pytest.fixture(scope="module")
def client(grpc_server: Any) -> Iterator[tgrpc.InferenceServerClient]:
    c = tgrpc.InferenceServerClient(f"127.0.0.1:{grpc_server.grpc_port}")
    yield c
    c.close()


def infer(client: tgrpc.InferenceServerClient, x: np.ndarray, outputs: tuple[str, ...] = ("logits",),
          name: str = "data", datatype: str = "FP32", **kwargs: Any) -> Any:
    tensor = tgrpc.InferInput(name, list(x.shape), datatype)
    tensor.set_data_from_numpy(x)
    return client.infer(MODEL, [tensor], outputs=[tgrpc.InferRequestedOutput(o) for o in outputs], **kwargs)


def test_health_and_metadata(client: tgrpc.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(MODEL) and client.is_model_ready(MODEL, "1")
    server = client.get_server_metadata(as_json=True)
    assert server["name"] == "bninception" and "binary_tensor_data" in server["extensions"]
    meta = client.get_model_metadata(MODEL, as_json=True)
    assert meta["inputs"] == [{"name": "data", "datatype": "FP32", "shape": ["-1", "1", "32", "32"]}]
    assert [o["name"] for o in meta["outputs"]] == ["logits", "probabilities"]
    with pytest.raises(InferenceServerException, match="unknown model 'resnet'") as info:
        client.get_model_metadata("resnet")
    assert info.value.status() == "StatusCode.NOT_FOUND"


def test_infer_matches_in_process_onnxruntime(client: tgrpc.InferenceServerClient, serve_reference: Any) -> None:
    x = digits_images(5, seed=31)
    result = infer(client, x, ("probabilities", "logits"), request_id="g-1")
    expected = serve_reference(x)
    assert result.get_response().id == "g-1"
    np.testing.assert_allclose(result.as_numpy("logits"), expected, atol=1e-5, rtol=0)
    probs = result.as_numpy("probabilities")
    np.testing.assert_allclose(probs, np.exp(expected) / np.exp(expected).sum(1, keepdims=True), atol=1e-6)
    assert [o.name for o in result.get_response().outputs] == ["probabilities", "logits"]


def test_grpc_and_http_share_the_batcher(grpc_server: Any, client: tgrpc.InferenceServerClient,
                                         serve_reference: Any) -> None:
    host, port = grpc_server.host, grpc_server.port
    runs = metric_value(host, port, "bninception_batch_requests_count")
    merged = metric_value(host, port, "bninception_batch_requests_sum")
    x = digits_images(12, seed=32)
    done: list[Any] = []
    for i in range(8):
        tensor = tgrpc.InferInput("data", [1, 1, 32, 32], "FP32")
        tensor.set_data_from_numpy(x[i:i + 1])
        client.async_infer(MODEL, [tensor], lambda result, error: done.append((result, error)),
                           outputs=[tgrpc.InferRequestedOutput("logits")])
    np.testing.assert_allclose(infer_logits(host, port, x[8:]), serve_reference(x[8:]), atol=1e-5)
    deadline = 200
    while len(done) < 8 and deadline:
        time.sleep(0.05)
        deadline -= 1
    assert len(done) == 8 and all(error is None for _, error in done), done
    assert metric_value(host, port, "bninception_batch_requests_sum") - merged == 9
    assert metric_value(host, port, "bninception_batch_requests_count") - runs < 9  # some were merged


def _raw_infer(grpc_server: Any, **fields: Any) -> grpc.StatusCode:
    """Send a ModelInferRequest built from our own schema (for payloads tritonclient refuses to build)."""
    from bninception.serve.grpc_service import SERVICE
    from bninception.serve.proto import inference_pb2 as pb

    request = pb.ModelInferRequest(model_name=MODEL, **fields)
    with grpc.insecure_channel(f"127.0.0.1:{grpc_server.grpc_port}") as channel:
        call = channel.unary_unary(f"/{SERVICE}/ModelInfer", request_serializer=type(request).SerializeToString,
                                   response_deserializer=pb.ModelInferResponse.FromString)
        try:
            call(request, timeout=30)
        except grpc.RpcError as exc:
            return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def _input(shape: list[int]) -> Any:
    from bninception.serve.proto import inference_pb2 as pb

    return pb.ModelInferRequest.InferInputTensor(name="data", datatype="FP32", shape=shape)


@pytest.mark.parametrize(("case", "status", "message"), [
    ("unknown model", "NOT_FOUND", "unknown model 'resnet'"),
    ("unknown version", "NOT_FOUND", "no version '2'"),
    ("wrong input name", "INVALID_ARGUMENT", "takes one input 'data'"),
    ("wrong datatype", "INVALID_ARGUMENT", "datatype 'FP64' is not supported"),
    ("wrong shape", "INVALID_ARGUMENT", "does not match the model's [-1, 1, 32, 32]"),
    ("batch too large", "INVALID_ARGUMENT", "outside 1..8"),
    ("unknown output", "INVALID_ARGUMENT", "unknown output 'features'"),
    ("too large", "RESOURCE_EXHAUSTED", "larger than max"),
])
def test_bad_requests_get_the_right_status(client: tgrpc.InferenceServerClient, serve_reference: Any,
                                           case: str, status: str, message: str) -> None:
    x = digits_images(1, seed=33)
    arguments: dict[str, Any] = {}
    if case == "unknown model":
        arguments = {"model": "resnet"}
    elif case == "unknown version":
        arguments = {"model_version": "2"}
    elif case == "wrong input name":
        arguments = {"name": "image"}
    elif case == "wrong datatype":
        x, arguments = x.astype(np.float64), {"datatype": "FP64"}
    elif case == "wrong shape":
        x = np.zeros((1, 3, 32, 32), np.float32)
    elif case == "batch too large":
        x = digits_images(9)
    elif case == "unknown output":
        arguments = {"outputs": ("features",)}
    elif case == "too large":
        x = np.zeros((8, 1, 256, 256), np.float32)  # 2 MiB of raw contents, over the 1 MiB body limit
    model = arguments.pop("model", MODEL)
    with pytest.raises(InferenceServerException, match=re.escape(message)) as info:
        tensor = tgrpc.InferInput(arguments.pop("name", "data"), list(x.shape), arguments.pop("datatype", "FP32"))
        tensor.set_data_from_numpy(x)
        client.infer(model, [tensor], outputs=[tgrpc.InferRequestedOutput(o)
                                               for o in arguments.pop("outputs", ("logits",))], **arguments)
    assert info.value.status() == f"StatusCode.{status}"
    good = digits_images(2, seed=34)
    np.testing.assert_allclose(infer(client, good).as_numpy("logits"), serve_reference(good), atol=1e-5)


def test_raw_contents_of_the_wrong_size_and_typed_contents(grpc_server: Any, serve_reference: Any) -> None:
    short = _raw_infer(grpc_server, inputs=[_input([1, 1, 32, 32])], raw_input_contents=[b"\0" * 4000])
    assert short == grpc.StatusCode.INVALID_ARGUMENT
    assert _raw_infer(grpc_server, inputs=[_input([1, 1, 32, 32])]) == grpc.StatusCode.INVALID_ARGUMENT
    typed = _input([1, 1, 32, 32])
    typed.contents.fp32_contents.extend(digits_images(1, seed=35).ravel().tolist())
    assert _raw_infer(grpc_server, inputs=[typed]) == grpc.StatusCode.OK


def test_schema_matches_the_protocol_tritonclient_speaks() -> None:
    """Every field of our generated messages has the number, label and type of Triton's compiled protos."""
    from tritonclient.grpc import model_config_pb2, service_pb2

    from bninception.serve.proto import inference_pb2 as pb

    checked = 0

    def compare(ours: Any, theirs: Any, where: str) -> None:
        nonlocal checked
        for field in ours.fields:
            other = theirs.fields_by_name[field.name]
            assert (field.number, field.type, field.label) == (other.number, other.type, other.label), \
                f"{where}.{field.name}"
            checked += 1
            if field.message_type is not None and not field.message_type.GetOptions().map_entry:
                compare(field.message_type, other.message_type, f"{where}.{field.name}")
            if field.enum_type is not None:
                names = {v.name: v.number for v in other.enum_type.values}
                assert all(names[v.name] == v.number for v in field.enum_type.values), f"{where}.{field.name}"

    for name, message in pb.DESCRIPTOR.message_types_by_name.items():
        theirs = getattr(service_pb2, name, None) or getattr(model_config_pb2, name)
        compare(message.DESCRIPTOR if hasattr(message, "DESCRIPTOR") else message, theirs.DESCRIPTOR, name)
    assert checked > 100
