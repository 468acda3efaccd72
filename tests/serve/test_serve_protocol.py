"""V2 request parsing / response encoding, the dynamic batcher and the metrics, without HTTP."""

from __future__ import annotations

import gzip
import json
import threading
import time

import numpy as np
import pytest

from bninception.serve.batcher import DynamicBatcher, QueueFull
from bninception.serve.metrics import ServerMetrics
from bninception.serve.protocol import (
    HEADER_LENGTH,
    InferRequest,
    ProtocolError,
    RequestedOutput,
    decode_content,
    encode_infer_response,
    parse_infer_request,
    softmax,
)

SHAPE = (1, 4, 4)


def request_json(data: list | None = None, shape: list | None = None, **extra: object) -> bytes:
    x = np.arange(16, dtype=np.float32) / 16
    body = {"inputs": [{"name": "data", "datatype": "FP32", "shape": shape or [1, 1, 4, 4],
                        "data": data if data is not None else x.tolist()}], **extra}
    return json.dumps(body).encode()


def binary_request(x: np.ndarray, declared: int | None = None, extra: bytes = b"") -> tuple[bytes, str]:
    blob = x.astype("<f4").tobytes()
    header = json.dumps({"inputs": [{"name": "data", "datatype": "FP32", "shape": list(x.shape),
                                     "parameters": {"binary_data_size": declared or len(blob)}}],
                         "outputs": [{"name": "logits", "parameters": {"binary_data": True}}]}).encode()
    return header + blob + extra, str(len(header))


def parse(body: bytes, header: str | None = None) -> InferRequest:
    return parse_infer_request(body, header, "data", SHAPE, max_batch=4)


def test_json_request_flat_and_nested() -> None:
    flat = parse(request_json(id="r1"))
    assert flat.id == "r1"
    assert flat.data.shape == (1, 1, 4, 4) and flat.data.dtype == np.float32
    assert flat.data[0, 0, 3, 3] == pytest.approx(15 / 16)
    assert [o.name for o in flat.outputs] == ["logits", "probabilities"]
    nested = parse(request_json(data=flat.data.tolist()))
    np.testing.assert_array_equal(nested.data, flat.data)


def test_binary_request_roundtrip() -> None:
    x = np.random.default_rng(1).standard_normal((3, 1, 4, 4)).astype(np.float32)
    body, header = binary_request(x)
    parsed = parse(body, header)
    np.testing.assert_array_equal(parsed.data, x)
    assert parsed.outputs == (RequestedOutput("logits", True),)


@pytest.mark.parametrize(("body", "header", "message"), [
    (b"{not json", None, "malformed JSON"),
    (b"[1, 2]", None, "must be a JSON object"),
    (request_json().replace(b'"data", "datatype"', b'"image", "datatype"'), None, "unknown input 'image'"),
    (request_json().replace(b'"FP32"', b'"INT64"'), None, "datatype 'INT64' is not supported"),
    (request_json(shape=[1, 3, 4, 4]), None, "does not match the model's [-1, 1, 4, 4]"),
    (request_json(shape=[1, 4, 4]), None, "does not match"),
    (request_json(shape=[5, 1, 4, 4], data=[0.0] * 80), None, "batch size 5 is outside 1..4"),
    (request_json(shape=[0, 1, 4, 4], data=[]), None, "batch size 0"),
    (request_json(data=[0.5] * 15), None, "15 values in 'data' but shape [1, 1, 4, 4] needs 16"),
    (request_json(data=["a"] * 16), None, "found str"),
    (request_json(data=[[0.5] * 8, 0.5]), None, "mixes numbers and nested arrays"),
    (request_json(outputs=[{"name": "features"}]), None, "unknown output 'features'"),
    (request_json(parameters={"timeout": -1}), None, "timeout must be a positive integer"),
    (request_json(id=7), None, "'id' must be a string"),
])
def test_json_request_errors(body: bytes, header: str | None, message: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse(body, header)
    assert info.value.status == 400
    assert message in info.value.message


def test_non_finite_inputs_pass_through_as_in_triton() -> None:
    """perf_analyzer's default random data holds NaN and infinities; Triton hands them to the model."""
    x = np.full((1, 1, 4, 4), np.nan, np.float32)
    x[0, 0, 0, :2] = [np.inf, -np.inf]
    body, header = binary_request(x)
    np.testing.assert_array_equal(parse(body, header).data, x)
    assert np.isnan(parse(request_json(data=[float("nan")] * 16), None).data).all()


def test_shared_memory_input_and_output() -> None:
    """Inputs read from, outputs written to the regions a request names (Triton's system shared memory)."""
    x = np.arange(32, dtype=np.float32).reshape(2, 1, 4, 4)
    reads: list[tuple[str, int, int]] = []

    def read(region: str, offset: int, size: int) -> bytes:
        reads.append((region, offset, size))
        return x.tobytes()

    header = json.dumps({"inputs": [{"name": "data", "datatype": "FP32", "shape": [2, 1, 4, 4], "parameters": {
        "shared_memory_region": "in", "shared_memory_byte_size": 128, "shared_memory_offset": 8}}],
        "outputs": [{"name": "logits", "parameters": {"shared_memory_region": "out",
                                                      "shared_memory_byte_size": 80}}]}).encode()
    request = parse_infer_request(header, None, "data", (1, 4, 4), 4, read)
    np.testing.assert_array_equal(request.data, x)
    assert reads == [("in", 8, 128)] and request.outputs[0].shm == ("out", 0, 80)
    written: dict[str, bytes] = {}
    logits = np.ones((2, 10), np.float32)
    body, _ = encode_infer_response("m", "1", request, logits, lambda r, o, b: written.__setitem__(r, b))
    assert written["out"] == logits.tobytes()
    entry = json.loads(body)["outputs"][0]
    assert entry == {"name": "logits", "datatype": "FP32", "shape": [2, 10]}  # as Triton: the data is in "out"
    small = parse_infer_request(header.replace(b"80}", b"40}"), None, "data", (1, 4, 4), 4, read)
    with pytest.raises(ProtocolError, match="more than its shared_memory_byte_size 40"):
        encode_infer_response("m", "1", small, logits, lambda r, o, b: None)
    with pytest.raises(ProtocolError, match="does not match shape"):
        parse_infer_request(header.replace(b"128", b"64"), None, "data", (1, 4, 4), 4, read)


def test_binary_header_lies() -> None:
    x = np.zeros((2, 1, 4, 4), np.float32)
    body, header = binary_request(x)
    for bad_header, message in [(str(len(body) + 10), "the body has"), ("abc", "must be an integer"),
                                ("0", "is 0")]:
        with pytest.raises(ProtocolError, match=message):
            parse(body, bad_header)
    short, header = binary_request(x, declared=64)
    with pytest.raises(ProtocolError, match="binary_data_size 64 does not match shape"):
        parse(short, header)
    extra, header = binary_request(x, extra=b"\0" * 8)
    with pytest.raises(ProtocolError, match="8 bytes of binary data after the header"):
        parse(extra, header)
    truncated, header = binary_request(x)
    with pytest.raises(ProtocolError, match="bytes of binary data follow the header"):
        parse(truncated[:-4], header)
    with pytest.raises(ProtocolError, match="bytes of binary data follow"):
        parse(truncated[: int(header)], None)  # binary_data_size without any binary part


def test_encode_response_json_and_binary() -> None:
    logits = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], np.float32)
    request = InferRequest("x", logits, (RequestedOutput("probabilities", False),
                                         RequestedOutput("logits", True)), None)
    body, headers = encode_infer_response("m", "1", request, logits)
    length = int(headers[HEADER_LENGTH])
    header = json.loads(body[:length])
    assert header["id"] == "x" and header["model_name"] == "m"
    assert [o["name"] for o in header["outputs"]] == ["probabilities", "logits"]
    probs = np.array(header["outputs"][0]["data"], np.float32).reshape(2, 3)
    np.testing.assert_allclose(probs, softmax(logits), rtol=1e-6)
    np.testing.assert_allclose(probs[1], [1 / 3] * 3, rtol=1e-6)
    assert header["outputs"][1]["parameters"]["binary_data_size"] == 24
    np.testing.assert_array_equal(np.frombuffer(body[length:], "<f4").reshape(2, 3), logits)
    plain, headers = encode_infer_response("m", "1", InferRequest(None, logits, (
        RequestedOutput("logits", False),), None), logits)
    assert HEADER_LENGTH not in headers and "id" not in json.loads(plain)


def test_decode_content_bounds() -> None:
    data = b"x" * 1000
    assert decode_content(gzip.compress(data), "gzip", 1000) == data
    with pytest.raises(ProtocolError) as info:
        decode_content(gzip.compress(b"\0" * 100_000), "gzip", 1000)
    assert info.value.status == 413
    with pytest.raises(ProtocolError, match="not valid gzip"):
        decode_content(b"plain", "gzip", 1000)
    with pytest.raises(ProtocolError) as info:
        decode_content(data, "br", 1000)
    assert info.value.status == 415


def test_batcher_merges_and_splits() -> None:
    seen: list[int] = []

    def run(batch: np.ndarray) -> np.ndarray:
        seen.append(len(batch))
        return batch * 2

    batcher = DynamicBatcher(run, max_batch=8, max_delay_s=0.2, max_queue=64)
    try:
        sizes = [1, 3, 2, 2, 4]
        futures = [batcher.submit(np.full((n, 2), float(i), np.float32)) for i, n in enumerate(sizes)]
        results = [f.result(timeout=5) for f in futures]
    finally:
        batcher.close()
    for i, (n, out) in enumerate(zip([1, 3, 2, 2, 4], results, strict=True)):
        np.testing.assert_array_equal(out, np.full((n, 2), 2.0 * i))
    assert sum(seen) == 12 and max(seen) == 8  # 1+3+2+2 merged, the 4 did not fit
    with pytest.raises(ValueError, match=r"1\.\.8 rows"):
        batcher.submit(np.zeros((9, 2), np.float32))


def test_batcher_without_batching_runs_one_request_at_a_time() -> None:
    seen: list[int] = []
    batcher = DynamicBatcher(lambda b: seen.append(len(b)) or b, max_batch=8, max_delay_s=0.05,
                             batching=False)
    try:
        futures = [batcher.submit(np.zeros((2, 1), np.float32)) for _ in range(4)]
        for f in futures:
            f.result(timeout=5)
    finally:
        batcher.close()
    assert seen == [2, 2, 2, 2]


def test_batcher_queue_full_cancel_and_errors() -> None:
    gate = threading.Event()

    def run(batch: np.ndarray) -> np.ndarray:
        gate.wait(5)
        if batch[0, 0] < 0:
            raise RuntimeError("boom")
        return batch

    batcher = DynamicBatcher(run, max_batch=1, max_delay_s=0, max_queue=2)
    try:
        first = batcher.submit(np.ones((1, 1), np.float32))
        deadline = time.monotonic() + 5
        while batcher.depth and time.monotonic() < deadline:  # the worker takes it and blocks
            time.sleep(0.005)
        queued = [batcher.submit(np.ones((1, 1), np.float32)), batcher.submit(-np.ones((1, 1), np.float32))]
        with pytest.raises(QueueFull):
            batcher.submit(np.ones((1, 1), np.float32))
        assert queued[0].cancel()  # a caller that timed out: skipped, never run
        gate.set()
        assert first.result(timeout=5)[0, 0] == 1
        with pytest.raises(RuntimeError, match="boom"):
            queued[1].result(timeout=5)
    finally:
        gate.set()
        batcher.close()


def test_metrics_render_prometheus_text() -> None:
    metrics = ServerMetrics()
    metrics.count("infer", 200)
    metrics.count("infer", 200)
    metrics.batch_size.observe(5)
    metrics.gauge("bninception_queue_depth", "waiting", lambda: 3)
    metrics.constants("bninception_limit", "limits", {"max_batch": 32})
    text = metrics.render().decode()
    assert 'bninception_requests_total{code="200",endpoint="infer"} 2.0' in text
    assert 'bninception_batch_size_bucket{le="4.0"} 0.0' in text
    assert 'bninception_batch_size_bucket{le="8.0"} 1.0' in text
    assert "bninception_queue_depth 3.0" in text and 'bninception_limit{name="max_batch"} 32.0' in text


def test_a_lone_request_never_waits_and_a_busy_model_batches_what_queued() -> None:
    """Triton's default: the free model takes what is queued at once; requests arriving while it runs
    form the next batch. The observer sees each batch's queue waits and phases (statistics)."""
    gate, seen, observed = threading.Event(), [], []

    def run(batch: np.ndarray) -> np.ndarray:
        seen.append(len(batch))
        gate.wait(5)
        return batch

    batcher = DynamicBatcher(run, max_batch=8, observer=lambda *args: observed.append(args))
    try:
        first = batcher.submit(np.zeros((1, 1), np.float32))
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:  # taken alone, without waiting for company
            time.sleep(0.002)
        later = [batcher.submit(np.zeros((n, 1), np.float32)) for n in (2, 3)]
        gate.set()
        for future in (first, *later):
            future.result(timeout=5)
    finally:
        gate.set()
        batcher.close()
    assert seen == [1, 5]
    assert [(rows, len(waits)) for rows, waits, _ in observed] == [(1, 1), (5, 2)]
    assert all(len(phases) == 3 and min(phases) >= 0 for _, _, phases in observed)


def test_statistics_have_tritons_shape() -> None:
    from bninception.serve.stats import ModelStatistics

    stats = ModelStatistics("m", "1")
    stats.batch(5, [0.001, 0.002], (0.0001, 0.004, 0.0002))
    stats.request(True, 0.01)
    stats.request(False, 0.02)
    out = stats.to_dict()
    assert out["inference_count"] == 5 and out["execution_count"] == 1
    assert out["inference_stats"]["success"] == {"count": 1, "ns": 10_000_000}
    assert out["inference_stats"]["fail"]["count"] == 1
    assert out["inference_stats"]["queue"] == {"count": 2, "ns": 3_000_000}
    assert out["batch_stats"] == [{"batch_size": 5, "compute_input": {"count": 1, "ns": 100_000},
                                   "compute_infer": {"count": 1, "ns": 4_000_000},
                                   "compute_output": {"count": 1, "ns": 200_000}}]


def test_error_messages_never_echo_unbounded_client_strings() -> None:
    name = "x" * 100_000
    body = request_json().replace(b'"data", "datatype"', f'"{name}", "datatype"'.encode())
    with pytest.raises(ProtocolError) as info:
        parse(body, None)
    assert info.value.status == 400 and len(info.value.message) < 600
    assert info.value.message.endswith("... (truncated)")
