"""Helpers for the serve/ and Triton tests: a small ONNX classifier with the export metadata, servers to test."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

LABELS = [f"digit-{i}" for i in range(10)]


def export_classifier(path: Path, metadata: bool = True) -> Path:
    """The demo BN-Inception (10 classes, 1 channel, width 0.25, 32x32) as ONNX with a dynamic batch.

    BN statistics are set from one batch of noise, so the logits depend on the input.
    """
    import onnx
    import torch

    from bninception.export.to_onnx import to_model_proto
    from bninception.model.architecture import ModelConfig, build_model
    from bninception.model.data import digits_preprocess

    torch.manual_seed(0)
    config = ModelConfig(num_classes=10, in_channels=1, width=0.25)
    model = build_model(config)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # cumulative average: one batch sets the statistics
            module.reset_running_stats()
    with torch.no_grad():
        model.train()(torch.randn(64, 1, 32, 32))
    proto = to_model_proto(model, (1, 32, 32))
    if metadata:
        from bninception.core import metadata as meta

        meta.write(proto, meta.entries(digits_preprocess(32), LABELS, config.to_dict(), "0" * 64))
    onnx.save(proto, str(path))
    return path


def digits_images(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, 1, 32, 32)).astype(np.float32)


def binary_infer_body(x: np.ndarray, name: str = "data") -> tuple[bytes, dict[str, str]]:
    """A V2 infer body with ``x`` as binary tensor data, and its headers."""
    import json

    blob = np.ascontiguousarray(x, dtype="<f4").tobytes()
    header = json.dumps({"inputs": [{"name": name, "datatype": "FP32", "shape": list(x.shape),
                                     "parameters": {"binary_data_size": len(blob)}}],
                         "outputs": [{"name": "logits", "parameters": {"binary_data": True}}]}).encode()
    return header + blob, {"Inference-Header-Content-Length": str(len(header)),
                           "Content-Type": "application/octet-stream"}


def infer_logits(host: str, port: int, x: np.ndarray, model: str = "bninception") -> np.ndarray:
    """Logits for ``x`` from the server's V2 infer route (binary tensors), or an AssertionError."""
    import http.client

    body, headers = binary_infer_body(x)
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request("POST", f"/v2/models/{model}/infer", body=body, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        assert response.status == 200, raw[:500]
        length = int(response.getheader("Inference-Header-Content-Length"))
        return np.frombuffer(raw[length:], "<f4").reshape(len(x), -1)
    finally:
        conn.close()


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response from a raw socket: status, headers (lower-case names), body.

    Raises ConnectionError when the server closes (or resets) before a whole response arrived.
    """
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response head arrived (got {data[:200]!r})")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed in the middle of a response body")
        rest += chunk
    return status, headers, rest[:length]


def closed_by_peer(sock: socket.socket) -> bool:
    """True when the server has closed the connection (reads give EOF or a reset)."""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def metric_value(host: str, port: int, series: str) -> float:
    """A value from /metrics by its exact series name with labels (0 when absent)."""
    import re
    import urllib.request

    text = urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=30).read().decode()
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def png(array: np.ndarray, mode: str | None = None) -> bytes:
    """``array`` as PNG bytes."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, format="PNG")
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_cli_server(model: Path, *args: str, stderr: int = subprocess.DEVNULL, timeout: float = 60,
                     command: tuple[str, ...] = (sys.executable, "-m", "bninception")
                     ) -> tuple[subprocess.Popen[str], int]:
    """``bninception serve --model MODEL --port PORT ARGS`` in a process of its own (127.0.0.1, a free
    port), returned once it answers ready; ``stderr``: where its log goes (PIPE: read it at the end);
    ``command``: how to start ``bninception``."""
    port = free_port()
    process = subprocess.Popen([*command, "serve", "--model", str(model), "--port", str(port), *args],
                               stdout=subprocess.DEVNULL, stderr=stderr, text=True)
    deadline = time.monotonic() + timeout
    while process.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2):
                return process, port
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"the server was not ready within {timeout:g} s") from None
            time.sleep(0.2)
    raise RuntimeError(f"the server exited: {(process.communicate()[1] or '')[-2000:]}")


class RunningServer:
    """The app served on a background thread (and its gRPC service); ``stop()`` shuts them down."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.host, self.port = server.host, server.port
        url_host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{url_host}:{self.port}"

    @property
    def grpc_port(self) -> int | None:
        return None if self.server.grpc is None else int(self.server.grpc.port)

    @property
    def grpc(self) -> Any:
        return self.server.grpc

    def stop(self, timeout: float = 30.0) -> None:
        self.server.stop(timeout)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def start_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0, grpc_port: int | None = None) -> RunningServer:
    """Start ``app`` on ``host`` (an ephemeral port by default; ``grpc_port=0``: gRPC on another one)
    and wait until it accepts requests."""
    from bninception.serve.server import BackgroundServer

    return RunningServer(BackgroundServer(app, host, port, grpc_port))
