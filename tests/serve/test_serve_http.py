"""The server on 127.0.0.1 with real clients: tritonclient (JSON and binary), raw HTTP for bad input."""

from __future__ import annotations

import gzip
import http.client
import io
import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton
from serve_helpers import LABELS, digits_images
from tritonclient.utils import InferenceServerException

MODEL = "bninception"


def client(server: Any, concurrency: int = 1) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(f"{server.host}:{server.port}", concurrency=concurrency,
                                        connection_timeout=30, network_timeout=30)


def infer(c: triton.InferenceServerClient, x: np.ndarray, binary: bool, **kwargs: Any) -> Any:
    tensor = triton.InferInput("data", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    outputs = [triton.InferRequestedOutput(n, binary_data=binary) for n in ("logits", "probabilities")]
    return c.infer(MODEL, [tensor], outputs=outputs, **kwargs)


def request(server: Any, method: str, path: str, body: bytes = b"",
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def metric(server: Any, name: str) -> float:
    _, _, text = request(server, "GET", "/metrics")
    match = re.search(rf"^{re.escape(name)} (\S+)$", text.decode(), re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def test_health_and_metadata(serve_server: Any) -> None:
    c = client(serve_server)
    assert c.is_server_live() and c.is_server_ready()
    assert c.is_model_ready(MODEL) and c.is_model_ready(MODEL, "1")
    assert not c.is_model_ready("resnet")
    server = c.get_server_metadata()
    assert "binary_tensor_data" in server["extensions"]
    meta = c.get_model_metadata(MODEL)
    assert meta["inputs"] == [{"name": "data", "datatype": "FP32", "shape": [-1, 1, 32, 32]}]
    assert [o["name"] for o in meta["outputs"]] == ["logits", "probabilities"]
    assert meta["parameters"]["labels"] == LABELS
    assert c.get_model_metadata(MODEL, "1") == meta
    config = c.get_model_config(MODEL)
    assert config["max_batch_size"] == 32 and config["input"][0]["dims"] == [1, 32, 32]
    with pytest.raises(InferenceServerException, match="unknown model 'resnet'"):
        c.get_model_metadata("resnet")
    with pytest.raises(InferenceServerException, match="no version '2'"):
        c.get_model_metadata(MODEL, "2")


@pytest.mark.parametrize("binary", [False, True])
def test_infer_matches_in_process_onnxruntime(serve_server: Any, serve_reference: Any, binary: bool) -> None:
    x = digits_images(5, seed=2)
    result = infer(client(serve_server), x, binary, request_id="req-42")
    expected = serve_reference(x)
    assert result.get_response()["id"] == "req-42"
    np.testing.assert_allclose(result.as_numpy("logits"), expected, atol=1e-5, rtol=0)
    probs = result.as_numpy("probabilities")
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert (probs.argmax(axis=1) == expected.argmax(axis=1)).all()
    assert np.ptp(expected[:, 0]) > 1e-3  # the inputs give different logits: the check has teeth


def test_requested_outputs_and_version_route(serve_server: Any, serve_reference: Any) -> None:
    x = digits_images(2, seed=3)
    tensor = triton.InferInput("data", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=True)
    result = client(serve_server).infer(MODEL, [tensor], model_version="1",
                                        outputs=[triton.InferRequestedOutput("probabilities")])
    names = [o["name"] for o in result.get_response()["outputs"]]
    assert names == ["probabilities"] and result.as_numpy("logits") is None
    logits = serve_reference(x)
    expected = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected / expected.sum(1, keepdims=True),
                               atol=1e-6)


def test_gzip_request_body(serve_server: Any, serve_reference: Any) -> None:
    x = digits_images(1, seed=4)
    body = json.dumps({"inputs": [{"name": "data", "datatype": "FP32", "shape": [1, 1, 32, 32],
                                   "data": x.ravel().tolist()}], "outputs": [{"name": "logits"}]})
    status, _, raw = request(serve_server, "POST", f"/v2/models/{MODEL}/infer", gzip.compress(body.encode()),
                             {"Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert status == 200
    out = json.loads(raw)["outputs"][0]
    np.testing.assert_allclose(np.array(out["data"]).reshape(1, 10), serve_reference(x), atol=1e-5)


def test_concurrent_clients_are_batched(serve_server: Any, serve_reference: Any) -> None:
    runs_before = metric(serve_server, "bninception_batch_requests_count")
    requests_before = metric(serve_server, "bninception_batch_requests_sum")
    singles_before = metric(serve_server, 'bninception_batch_requests_bucket{le="1.0"}')
    c = client(serve_server, concurrency=16)
    x = digits_images(48, seed=5)
    pending = []
    for i in range(48):
        tensor = triton.InferInput("data", [1, 1, 32, 32], "FP32")
        tensor.set_data_from_numpy(x[i:i + 1], binary_data=True)
        pending.append(c.async_infer(MODEL, [tensor], outputs=[triton.InferRequestedOutput("logits")]))
    logits = np.concatenate([p.get_result(timeout=60).as_numpy("logits") for p in pending])
    c.close()
    np.testing.assert_allclose(logits, serve_reference(x), atol=1e-5)  # each request got its own rows
    runs = metric(serve_server, "bninception_batch_requests_count") - runs_before
    merged = metric(serve_server, "bninception_batch_requests_sum") - requests_before
    multi = runs - (metric(serve_server, 'bninception_batch_requests_bucket{le="1.0"}') - singles_before)
    assert merged == 48
    assert runs < 48 and multi >= 1, f"48 requests ran in {runs} batches, {multi} with more than one"
    assert metric(serve_server, "bninception_queue_depth") == 0


def raw_infer(x: np.ndarray | None = None, **change: Any) -> bytes:
    x = digits_images(1) if x is None else x
    tensor = {"name": "data", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}
    tensor.update(change)
    return json.dumps({"inputs": [tensor]}).encode()


def binary_body(lie: int = 0) -> tuple[bytes, dict[str, str]]:
    blob = digits_images(1).tobytes()
    header = json.dumps({"inputs": [{"name": "data", "datatype": "FP32", "shape": [1, 1, 32, 32],
                                     "parameters": {"binary_data_size": len(blob) + lie}}]}).encode()
    return header + blob, {"Inference-Header-Content-Length": str(len(header))}


BINARY, BINARY_HEADERS = binary_body(lie=8)
INFER = f"/v2/models/{MODEL}/infer"
BAD_REQUESTS = [
    ("malformed json", INFER, b'{"inputs": [', {}, 400, "malformed JSON"),
    ("unknown input", INFER, raw_infer(name="image"), {}, 400, "unknown input 'image'"),
    ("wrong datatype", INFER, raw_infer(datatype="FP16"), {}, 400, "datatype 'FP16' is not supported"),
    ("wrong shape", INFER, raw_infer(shape=[1, 3, 32, 32]), {}, 400,
     "does not match the model's [-1, 1, 32, 32]"),
    ("batch too large", INFER, raw_infer(shape=[33, 1, 32, 32]), {}, 400, "outside 1..32"),
    ("data length", INFER, raw_infer(data=[0.0] * 1000), {}, 400, "1000 values in 'data' but shape"),
    ("binary size lies", INFER, BINARY, BINARY_HEADERS, 400, "binary_data_size 4104 does not match"),
    ("header length lies", INFER, BINARY, {"Inference-Header-Content-Length": "999999"}, 400,
     "Inference-Header-Content-Length is 999999"),
    ("unknown output", INFER, json.dumps({**json.loads(raw_infer()), "outputs": [{"name": "x"}]}).encode(),
     {}, 400, "unknown output 'x'"),
    ("unknown model", "/v2/models/resnet/infer", raw_infer(), {}, 404, "unknown model 'resnet'"),
    ("unknown version", f"/v2/models/{MODEL}/versions/3/infer", raw_infer(), {}, 404, "no version '3'"),
    ("body too large", INFER, b"", {"Content-Length": str(64 << 20)}, 413, "exceeds the limit"),
    ("bad encoding", INFER, raw_infer(), {"Content-Encoding": "br"}, 415, "unsupported Content-Encoding"),
    ("classify no image", "/v1/classify", b"", {"Content-Type": "image/png"}, 400, "no image"),
    ("classify not an image", "/v1/classify", b"GIF89a garbage", {}, 400, "not a readable image"),
    ("classify bad top", "/v1/classify?top=11", b"x", {}, 400, "top must be in 1..10"),
    ("unknown route", "/v2/nothing", b"", {}, 404, "Not Found"),
]


@pytest.mark.parametrize(("path", "body", "headers", "status", "message"),
                         [case[1:] for case in BAD_REQUESTS], ids=[case[0] for case in BAD_REQUESTS])
def test_bad_requests_are_refused_then_server_still_serves(serve_server: Any, serve_reference: Any,
                                                            path: str, body: bytes, headers: dict[str, str],
                                                            status: int, message: str) -> None:
    if headers.get("Content-Length"):  # declare a huge body but send none: refused before reading
        conn = http.client.HTTPConnection(serve_server.host, serve_server.port, timeout=30)
        conn.putrequest("POST", path)
        for key, value in headers.items():
            conn.putheader(key, value)
        conn.endheaders()
        response = conn.getresponse()
        got_status, got_body = response.status, response.read()
        conn.close()
    else:
        got_status, _, got_body = request(serve_server, "POST", path, body, headers)
    assert got_status == status, got_body
    assert message in json.loads(got_body)["error"]
    x = digits_images(1, seed=9)
    np.testing.assert_allclose(infer(client(serve_server), x, True).as_numpy("logits"), serve_reference(x),
                               atol=1e-5)


def test_chunked_body_over_limit_is_413(serve_server: Any) -> None:
    """The server answers before the client has sent everything, and keeps reading (and dropping) the
    rest for a moment before it closes: the client always reads the 413, never a reset."""
    conn = http.client.HTTPConnection(serve_server.host, serve_server.port, timeout=30)
    try:
        conn.request("POST", INFER, body=iter([b"[" * (1 << 20)] * 3), encode_chunked=True,
                     headers={"Transfer-Encoding": "chunked"})
        response = conn.getresponse()
        assert response.status == 413 and "exceeds the limit" in json.loads(response.read())["error"]
        assert response.getheader("Connection") == "close"
    finally:
        conn.close()
    assert request(serve_server, "GET", "/v2/health/ready")[0] == 200


def png_bytes() -> bytes:
    """A 40x48 RGB drawing of a "7" (resized, centre-cropped and greyed by the recorded preprocessing)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (40, 48), "black")
    ImageDraw.Draw(image).line([(8, 10), (32, 10), (16, 40)], fill=(250, 240, 230), width=4)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_classify_multipart_and_raw(serve_server: Any, serve_reference: Any) -> None:
    from PIL import Image

    from bninception.model.data import digits_preprocess

    png = png_bytes()
    expected = serve_reference(digits_preprocess(32)(Image.open(io.BytesIO(png)))[None])[0]
    order = np.argsort(-expected)[:5]
    boundary = "bninceptionboundary"
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"d.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + png + f"\r\n--{boundary}--\r\n".encode()
    for body, ctype in [(form, f"multipart/form-data; boundary={boundary}"), (png, "image/png")]:
        status, _, raw = request(serve_server, "POST", "/v1/classify", body, {"Content-Type": ctype})
        assert status == 200, raw
        top = json.loads(raw)["top"]
        assert [t["index"] for t in top] == order.tolist()
        assert [t["label"] for t in top] == [LABELS[i] for i in order]
        probs = np.exp(expected - expected.max())
        assert top[0]["probability"] == pytest.approx(float(probs.max() / probs.sum()), abs=1e-6)


def test_metrics_count_requests_by_status(serve_server: Any) -> None:
    before = metric(serve_server, 'bninception_requests_total{code="404",endpoint="infer"}') \
        if "404" in request(serve_server, "GET", "/metrics")[2].decode() else 0.0
    request(serve_server, "POST", "/v2/models/nope/infer", raw_infer())
    after = metric(serve_server, 'bninception_requests_total{code="404",endpoint="infer"}')
    assert after == before + 1
    _, headers, text = request(serve_server, "GET", "/metrics")
    assert headers["content-type"].startswith("text/plain")
    assert "# TYPE bninception_request_latency_seconds histogram" in text.decode()


def test_queue_full_is_503_and_timeout_is_504(serve_model_path: Path) -> None:
    from serve_helpers import start_in_thread

    from bninception.serve.app import create_app

    # One request waits 2 s in the queue for a batch that never fills: the next one finds it full.
    app = create_app(serve_model_path, max_batch=8, max_delay_ms=2000, max_queue=1, request_timeout_s=0.5)
    with start_in_thread(app) as server:
        results: list[int] = []
        first = threading.Thread(
            target=lambda: results.append(request(server, "POST", INFER, raw_infer())[0]))
        first.start()
        deadline = 1000  # polls of 10 ms: at most 10 s
        while app.state.server.batcher.depth == 0 and deadline:
            time.sleep(0.01)
            deadline -= 1
        status, headers, body = request(server, "POST", INFER, raw_infer())
        first.join(30)
        assert status == 503 and headers["retry-after"] == "1"
        assert "queue full" in json.loads(body)["error"]
        assert results == [504]  # it waited past the 0.5 s request timeout
        text = request(server, "GET", "/metrics")[2].decode()
        assert 'bninception_rejected_total{reason="timeout"} 1' in text


def test_model_without_metadata(serve_bare_model_path: Path) -> None:
    from serve_helpers import start_in_thread

    from bninception.serve.app import create_app

    with start_in_thread(create_app(serve_bare_model_path, max_delay_ms=0)) as server:
        meta = client(server).get_model_metadata(MODEL)
        assert meta["parameters"]["labels"] == [str(i) for i in range(10)]
        assert meta["parameters"]["preprocess"] is None
        status, _, body = request(server, "POST", "/v1/classify", png_bytes(), {"Content-Type": "image/png"})
        assert status == 501
        assert "has no recorded preprocessing" in json.loads(body)["error"]
        x = digits_images(2)
        assert infer(client(server), x, False).as_numpy("logits").shape == (2, 10)
