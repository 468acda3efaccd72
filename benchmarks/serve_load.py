"""Load benchmark of ``bninception serve``: HTTP with dynamic batching on and off, and gRPC, side by side.

Starts the server as a subprocess on 127.0.0.1, drives it from a separate client process with C
concurrent requests for T seconds (one image per request: HTTP keep-alive connections with the
binary tensor extension, or gRPC ModelInfer with raw tensor contents on one channel), and reports
throughput, p50/p95/p99 latency, errors and the mean batch the server formed. In the same run it
measures in-process ONNX Runtime throughput at each served mean batch size, with the same thread
setting, and prints the ratio. Phases are interleaved round by round, so load from elsewhere on the
host hits every mode alike. The clients are bare asyncio protocols / a raw gRPC channel, so on a
small host the server gets most of the CPU.

    .venv/bin/python benchmarks/serve_load.py                       # demo model, about 55 s
    .venv/bin/python benchmarks/serve_load.py --model runs/demo/model.folded.onnx -c 32 -t 10
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

MAX_SECONDS_PER_PHASE = 60


def export_demo_model(path: Path, width: float, image_size: int) -> Path:
    """The demo BN-Inception (10 classes, 1 channel) with BN statistics from one batch of noise."""
    import torch

    from bninception.model.architecture import ModelConfig, build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=10, in_channels=1, width=width))
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None
            module.reset_running_stats()
    with torch.no_grad():
        model.train()(torch.randn(32, 1, image_size, image_size))
    torch.onnx.export(model.eval(), (torch.zeros(1, 1, image_size, image_size),), str(path), dynamo=False,
                      input_names=["data"], output_names=["logits"],
                      dynamic_axes={"data": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17)
    return path


# -- client process -----------------------------------------------------------------------------
def http_request(path: str, body: bytes, headers: dict[str, str]) -> bytes:
    """The bytes of one keep-alive POST (built once, sent many times)."""
    head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": "127.0.0.1", "Content-Length": str(len(body)),
                                                   **headers}.items())
    return f"POST {path} HTTP/1.1\r\n{head}\r\n".encode() + body


async def http_load(port: int, request: bytes, concurrency: int, start_at: float, stop_at: float
                    ) -> tuple[list[float], int]:
    """``concurrency`` keep-alive connections, each sending ``request`` again as soon as the answer
    is in, until ``stop_at``: (latencies of 200 answers, other answers and failures).

    A bare asyncio protocol: the client costs little CPU, so on a small host the server gets most of
    it (a blocking client costs about as much CPU per request as the server does)."""
    import asyncio

    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    errors = 0

    class Connection(asyncio.Protocol):
        def __init__(self, done: asyncio.Future[None]) -> None:
            self.done, self.buffer, self.sent = done, bytearray(), 0.0
            self.transport: asyncio.Transport | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport  # type: ignore[assignment]
            loop.call_at(start_at, self.send)

        def send(self) -> None:
            if time.monotonic() >= stop_at or self.transport is None or self.transport.is_closing():
                if self.transport is not None:
                    self.transport.close()
                return
            self.sent = time.perf_counter()
            self.transport.write(request)

        def data_received(self, data: bytes) -> None:
            nonlocal errors
            self.buffer += data
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower() + b"\r\n"
            at = head.find(b"\r\ncontent-length:")  # at a line start (not inference-header-content-length)
            length = int(head[at + 17:head.find(b"\r\n", at + 2)]) if at >= 0 else 0
            if len(self.buffer) < end + 4 + length:
                return
            del self.buffer[:end + 4 + length]
            if head.startswith(b"http/1.1 200"):
                latencies.append(time.perf_counter() - self.sent)
            else:
                errors += 1
            self.send()

        def connection_lost(self, exc: Exception | None) -> None:
            if not self.done.done():
                self.done.set_result(None)

    async def one() -> None:
        nonlocal errors
        while time.monotonic() < stop_at:
            done: asyncio.Future[None] = loop.create_future()
            try:
                await loop.create_connection(functools.partial(Connection, done), "127.0.0.1", port)
            except OSError:
                errors += 1
                await asyncio.sleep(0.05)
                continue
            await done
            if time.monotonic() < stop_at:
                errors += 1  # the server closed a connection it should have kept

    await asyncio.gather(*(one() for _ in range(concurrency)))
    return latencies, errors


async def grpc_load(port: int, request: bytes, concurrency: int, start_at: float, stop_at: float
                    ) -> tuple[list[float], int]:
    """``concurrency`` ModelInfer calls in flight on one HTTP/2 channel until ``stop_at`` (the request
    serialized once, the answers left as bytes: the client does no protobuf work per call)."""
    import asyncio

    import grpc

    from bninception.serve.grpc_schema import SERVICE

    latencies: list[float] = []
    errors = 0
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(f"/{SERVICE}/ModelInfer")

        async def worker() -> None:
            nonlocal errors
            await asyncio.sleep(max(0.0, start_at - time.monotonic()))
            while time.monotonic() < stop_at:
                sent = time.perf_counter()
                try:
                    await call(request, timeout=30)
                    latencies.append(time.perf_counter() - sent)
                except grpc.aio.AioRpcError:
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors


def grpc_request(name: str, input_name: str, shape: list[int], blob: bytes) -> bytes:
    from bninception.serve.grpc_schema import message_classes

    messages = message_classes()
    request = messages["ModelInferRequest"](model_name=name, raw_input_contents=[blob])
    request.inputs.add(name=input_name, datatype="FP32", shape=shape)
    request.outputs.add(name="logits")
    return bytes(request.SerializeToString())


def client_main(args: argparse.Namespace) -> None:
    """Run C keep-alive connections (or gRPC calls) for T seconds; print one JSON result on stdout."""
    import asyncio

    shape = json.loads(args.shape)
    blob = np.random.default_rng(0).standard_normal(shape).astype("<f4").tobytes()
    header = json.dumps({"inputs": [{"name": args.input, "datatype": "FP32", "shape": shape,
                                     "parameters": {"binary_data_size": len(blob)}}],
                         "outputs": [{"name": "logits", "parameters": {"binary_data": True}}]}).encode()
    request = http_request(f"/v2/models/{args.name}/infer", header + blob,
                           {"Inference-Header-Content-Length": str(len(header)),
                            "Content-Type": "application/octet-stream"})
    start_at = time.monotonic() + 0.2
    stop_at = start_at + min(args.duration, MAX_SECONDS_PER_PHASE)
    runner: Any
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    if args.client == "grpc":
        latencies, errors = asyncio.run(grpc_load(args.port, grpc_request(args.name, args.input, shape, blob),
                                                  args.concurrency, start_at, stop_at))
    else:
        latencies, errors = runner(http_load(args.port, request, args.concurrency, start_at, stop_at))
    elapsed = time.monotonic() - start_at
    flat = np.array(latencies) * 1000
    print(json.dumps({"requests": int(flat.size), "errors": errors, "seconds": elapsed,
                      "p50": float(np.percentile(flat, 50)) if flat.size else None,
                      "p95": float(np.percentile(flat, 95)) if flat.size else None,
                      "p99": float(np.percentile(flat, 99)) if flat.size else None}))


# -- server phases ------------------------------------------------------------------------------
def free_port() -> int:
    from bninception.serve.server import bind_socket

    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.close()
    return int(port)


def metric(url: str, name: str) -> float:
    text = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else float("nan")


def run_phase(model: Path, batching: bool, args: argparse.Namespace, shape: list[int], protocol: str = "http"
              ) -> dict[str, Any]:
    port, grpc_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "bninception", "serve", "--model", str(model), "--port", str(port),
               "--max-batch", str(args.max_batch), "--max-delay-ms", str(args.max_delay_ms),
               "--threads", str(args.threads), "--max-queue", str(max(256, 4 * args.concurrency))]
    if protocol == "grpc":
        command += ["--grpc-port", str(grpc_port)]
    if not batching:
        command.append("--no-batching")
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"server exited: {server.communicate()[1]}")
            try:
                if urllib.request.urlopen(f"{url}/v2/health/ready", timeout=2).status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not become ready in 60 s")
            time.sleep(0.2)
        client = subprocess.run(
            [sys.executable, __file__, "--client", protocol, "--port", str(grpc_port if protocol == "grpc" else port),
             "--shape", json.dumps(shape),
             "--input", args.input_name, "--name", "bninception", "-c", str(args.concurrency),
             "-t", str(args.duration)],
            capture_output=True, text=True, timeout=MAX_SECONDS_PER_PHASE + 60, check=True)
        result = json.loads(client.stdout)
        runs = metric(url, "bninception_batch_size_count")
        rows = metric(url, "bninception_batch_size_sum")
        result["mean_batch"] = rows / runs if runs else float("nan")
        result["throughput"] = result["requests"] * shape[0] / result["seconds"]
        return result
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def in_process(model: Path, batch: int, shape: list[int], seconds: float, threads: int) -> float:
    """Images per second of in-process ONNX Runtime at ``batch`` in a fresh process (like the server's)."""
    result = subprocess.run(
        [sys.executable, __file__, "--measure", str(model), "--batch", str(batch), "--shape", json.dumps(shape),
         "-t", str(seconds), "--threads", str(threads)],
        capture_output=True, text=True, timeout=seconds + 60, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def measure(model: Path, batch: int, shape: list[int], seconds: float, threads: int) -> float:
    """ONNX Runtime images per second with the server's session settings, in this process."""
    from bninception.core.runner import OrtRunner

    runner = OrtRunner(model, threads=threads, spinning=False)
    rows = np.random.default_rng(0).standard_normal([batch, *shape[1:]]).astype(np.float32)
    runner.run(rows)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        runner.run(rows)
        count += batch
    return count / (time.perf_counter() - start)


Row = tuple[str, "dict[str, Any] | None", float, int, float]  # label, served result, img/s, batch, ref


def print_table(rows: list[Row]) -> None:
    print("\n| run | img/s | p50 ms | p95 ms | p99 ms | errors | mean batch "
          "| vs in-process ORT at that batch |")
    print("|---|---|---|---|---|---|---|---|")
    for label, r, ips, batch, same in rows:
        if r is None:
            print(f"| {label} | {ips:.0f} | | | | | {batch} | {ips / same:.2f}x |")
        else:
            print(f"| {label} | {ips:.0f} | {r['p50']:.1f} | {r['p95']:.1f} | {r['p99']:.1f} "
                  f"| {r['errors']} | {r['mean_batch']:.1f} | {ips / same:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None,
                        help="ONNX model (default: export the demo model)")
    parser.add_argument("--width", type=float, default=0.25, help="demo model width (default 0.25)")
    parser.add_argument("--image-size", type=int, default=32, help="demo model input size (default 32)")
    parser.add_argument("-c", "--concurrency", type=int, default=32, help="concurrent clients (default 32)")
    parser.add_argument("-t", "--duration", type=float, default=4.0, help="seconds per phase (default 4)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of all modes (default 2)")
    parser.add_argument("--max-batch", type=int, default=16,
                        help="server max batch (default 16: half the clients, so one batch's I/O overlaps the "
                             "next one's compute)")
    parser.add_argument("--max-delay-ms", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=1,
                        help="ONNX Runtime intra-op threads, server and in-process alike (default 1: the demo "
                             "network runs as fast on one thread as on two, so the other core serves I/O; "
                             "0: ONNX Runtime's default)")
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    # client-process mode (internal)
    parser.add_argument("--client", choices=("http", "grpc"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--shape", help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--name", help=argparse.SUPPRESS)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client_main(args)
        return
    if args.measure:
        print(measure(args.measure, args.batch, json.loads(args.shape), args.duration, args.threads))
        return
    args.duration = min(args.duration, MAX_SECONDS_PER_PHASE)

    from bninception.core.runner import OrtRunner

    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or export_demo_model(Path(tmp) / "demo.onnx", args.width, args.image_size)
        spec = OrtRunner(model).input_spec
        args.input_name = spec.name
        shape = [1, spec.channels, spec.height, spec.width]
        print(f"model {model} input {shape}, {args.concurrency} clients x {args.duration:g} s per phase, "
              f"{args.rounds} rounds, max batch {args.max_batch}, max delay {args.max_delay_ms:g} ms, "
              f"cpus {os.cpu_count()}", file=sys.stderr)
        seconds = min(3.0, args.duration)
        for n in range(1, args.rounds + 1):  # interleaved: load from elsewhere hits every mode alike
            served = {"HTTP, batching on": run_phase(model, True, args, shape),
                      "gRPC, batching on": run_phase(model, True, args, shape, "grpc"),
                      "HTTP, batching off": run_phase(model, False, args, shape)}
            batches = {label: max(1, round(r["mean_batch"])) for label, r in served.items()}
            reference = {b: in_process(model, b, shape, seconds, args.threads) for b in sorted(set(batches.values()))}
            rows += [(f"{n}: {label}", r, r["throughput"], batches[label], reference[batches[label]])
                     for label, r in served.items()]
            rows += [(f"{n}: in-process ORT, batch {b}", None, ips, b, ips) for b, ips in reference.items()]
    print_table(rows)
    if args.json:
        print(json.dumps([{"run": label, "throughput": ips, "batch": batch, "served": r}
                          for label, r, ips, batch, _ in rows]))


if __name__ == "__main__":
    main()
