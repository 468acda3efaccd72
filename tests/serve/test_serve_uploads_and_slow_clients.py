"""Hardening, round 2: uploads decoded as JPEG/PNG only (no outside program), bounded JPEG scans, every
mode converted or refused with a 4xx, slow senders and idle gRPC connections that cannot crowd out
others, Upgrade headers ignored without losing the body, settings checked before the server is ready."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from serve_helpers import digits_images, infer_logits, metric_value, read_response

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # + empty SETTINGS


@pytest.fixture(scope="module")
def server(serve_model_path: Path) -> Iterator[Any]:
    from serve_helpers import start_in_thread

    from bninception.serve.app import create_app

    app = create_app(serve_model_path, max_batch=8, keep_alive_s=1.0, max_connections=16)
    with start_in_thread(app, grpc_port=0) as running:
        yield running


def post(server: Any, path: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    import http.client

    conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
    conn.request("POST", path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, json.loads(data) if data else {}


def encoded(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def test_only_jpeg_and_png_are_decoded_and_no_outside_program_runs(server: Any, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "gs-called"
    fake = tmp_path / "bin" / "gs"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> {marker}\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    eps = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n%%EndComments\n"
           b"newpath 0 0 moveto 8 8 lineto stroke showpage\n%%EOF\n")
    gray = Image.fromarray((np.arange(64).reshape(8, 8) * 4).astype(np.uint8), "L")
    refused = {"eps": eps, "tiff": encoded(gray, "TIFF"), "lab-tiff": encoded(Image.new("LAB", (8, 8)), "TIFF"),
               "bmp": encoded(gray, "BMP"), "gif": encoded(gray, "GIF"), "pcx": encoded(gray, "PCX"),
               "tga": encoded(gray, "TGA"), "sgi": encoded(gray, "SGI"), "webp": encoded(gray.convert("RGB"), "WEBP")}
    for name, data in refused.items():
        status, body = post(server, "/v1/classify", data)
        assert status == 400 and "not a readable image (read here: JPEG, PNG;" in body["error"], (name, status, body)
    assert not marker.exists(), marker.read_text()  # Ghostscript (here a fake) was never run
    for mode in ("1", "L", "LA", "P", "RGB", "RGBA", "I;16"):
        status, body = post(server, "/v1/classify", encoded(gray.convert(mode), "PNG"))
        assert status == 200 and len(body["top"]) == 5, (mode, status, body)
    for mode in ("L", "RGB", "CMYK"):
        status, body = post(server, "/v1/classify", encoded(gray.convert(mode), "JPEG", progressive=True))
        assert status == 200, (mode, status, body)


def test_a_jpeg_with_too_many_scans_is_refused_at_once(server: Any) -> None:
    """Scan bombs decode for seconds per image: the SOS markers are counted before any decode."""
    from bninception.core.preprocess import MAX_JPEG_SCANS

    base = encoded(Image.new("L", (1440, 1440)), "JPEG", progressive=True)
    payload = b"\xff\xda" * (MAX_JPEG_SCANS + 1)
    bomb = base[:2] + b"\xff\xfe" + (len(payload) + 2).to_bytes(2, "big") + payload + base[2:]  # a COM segment
    started = time.perf_counter()
    status, body = post(server, "/v1/classify", bomb)
    assert status == 400 and f"(at most {MAX_JPEG_SCANS})" in body["error"], body
    assert time.perf_counter() - started < 1.0
    assert post(server, "/v1/classify", base)[0] == 200


def test_an_upgrade_header_does_not_lose_the_body(server: Any, serve_reference: Any) -> None:
    x = digits_images(1, seed=3)
    body = json.dumps({"inputs": [{"name": "data", "datatype": "FP32", "shape": [1, 1, 32, 32],
                                   "data": x.ravel().tolist()}]}).encode()
    head = ("POST /v2/models/bninception/infer HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            f"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\nContent-Length: {len(body)}\r\n\r\n")
    request = head.encode() + body
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        # Two, pipelined: the connection stays HTTP/1.1. The second one's head is cut, and its rest comes
        # after the keep-alive period (1 s here): a request that has begun is not an idle connection.
        sock.sendall(request + request[:20])
        time.sleep(1.3)
        sock.sendall(request[20:])
        for _ in range(2):
            status, _, answer = read_response(sock)
            assert status == 200, answer
            logits = json.loads(answer)["outputs"][0]["data"]
            np.testing.assert_allclose(np.reshape(logits, (1, 10)), serve_reference(x), atol=1e-5)


def test_a_one_byte_at_a_time_sender_is_cut_off_and_others_are_served(server: Any) -> None:
    def trickle(results: list[int]) -> None:
        with socket.create_connection((server.host, server.port), timeout=20) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(b"POST /v2/models/bninception/infer HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n")
            try:
                for _ in range(20_000):
                    sock.send(b"0")
                    time.sleep(0)  # one byte per segment
            except OSError:
                pass
            try:
                results.append(read_response(sock)[0])
            except OSError:
                results.append(-1)

    results: list[int] = []
    threads = [threading.Thread(target=trickle, args=(results,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    worst = 0.0
    x = digits_images(1, seed=5)
    while any(t.is_alive() for t in threads):
        started = time.perf_counter()
        infer_logits(server.host, server.port, x)
        worst = max(worst, time.perf_counter() - started)
        time.sleep(0.02)
    for thread in threads:
        thread.join()
    assert worst < 1.0, worst
    assert results and all(code in (408, -1) for code in results), results
    assert 408 in results


def test_idle_grpc_connections_are_closed_and_bounded(server: Any) -> None:
    """16 connections at most; an idle one (no RPC in flight) is closed after keep_alive_s (1 s here)."""
    sockets = []
    for _ in range(20):
        sock = socket.create_connection((server.host, server.grpc_port), timeout=0.05)
        sock.sendall(H2_PREFACE)
        sockets.append(sock)
    closed: dict[int, float] = {}
    started = time.monotonic()
    while time.monotonic() - started < 5 and len(closed) < len(sockets):
        for index, sock in enumerate(sockets):
            if index in closed:
                continue
            try:
                if sock.recv(65536) == b"":
                    closed[index] = time.monotonic() - started
            except TimeoutError:
                pass
            except OSError:
                closed[index] = time.monotonic() - started
    for sock in sockets:
        sock.close()
    times = sorted(closed.values())
    assert len(times) == 20, times
    assert sum(t < 0.5 for t in times) >= 4  # over the limit of 16: closed at once
    assert times[-1] < 3.0  # the idle ones after about a second
    assert infer_logits(server.host, server.port, digits_images(1)).shape == (1, 10)


def test_an_undecodable_grpc_message_is_invalid_argument_and_counted(server: Any) -> None:
    import grpc

    before = metric_value(server.host, server.port, 'bninception_requests_total{code="INVALID_ARGUMENT",endpoint='
                                                    '"grpc_infer"}')
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        with pytest.raises(grpc.RpcError) as info:
            call(b"\xff\xff\xff\xff not a protobuf", timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "could not be decoded" in info.value.details()
    after = metric_value(server.host, server.port, 'bninception_requests_total{code="INVALID_ARGUMENT",endpoint='
                                                   '"grpc_infer"}')
    assert after == before + 1


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bninception", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_serve_checks_its_settings_before_it_is_ready(serve_model_path: Path, tmp_path: Path) -> None:
    import onnx

    from bninception.core import metadata

    result = cli("serve", "--model", str(serve_model_path), "--name", "a/b", "--port", "0")
    assert result.returncode == 2 and "model name 'a/b' must be" in result.stderr, result.stderr
    model = onnx.load(str(serve_model_path))
    values = metadata.props(model)
    bad = json.loads(values[metadata.PREPROCESS])
    bad.update(mean=[0.1, 0.2, 0.3], resize=10**9)
    metadata.write(model, {**values, metadata.PREPROCESS: json.dumps(bad)})
    path = tmp_path / "bad.onnx"
    onnx.save(model, str(path))
    result = cli("serve", "--model", str(path), "--port", "0")
    assert result.returncode == 2 and "3 means and 1 stds for 1 channel(s)" in result.stderr, result.stderr
    assert "resize 1000000000" in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_triton_repo_names_stay_inside_the_output(serve_model_path: Path, tmp_path: Path) -> None:
    from bninception.core.errors import BninceptionError
    from bninception.triton_repo import write_repository

    run = tmp_path / "run"
    run.mkdir()
    (run / "model.folded.onnx").write_bytes(serve_model_path.read_bytes())
    out = tmp_path / "deep" / "repo"
    for name in ("../../x", "a/b", "", ".hidden", "x" * 65):
        with pytest.raises(BninceptionError, match=r"--name .* must be 1-64 letters"):
            write_repository(run, out, name=name)
    assert not (tmp_path / "x_onnx").exists() and not out.exists()
