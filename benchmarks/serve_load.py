"""Load benchmark of ``bninception serve``: served throughput with dynamic batching on and off.

Starts the server as a subprocess on 127.0.0.1, drives it from a separate client process with C
concurrent keep-alive connections for T seconds (binary tensor protocol, one image per request),
and reports throughput, p50/p95/p99 latency, errors and the mean batch the server formed. In the
same run it measures in-process ONNX Runtime throughput at the max batch size and at the mean
served batch size, with the same thread setting, and prints the ratio.

    .venv/bin/python benchmarks/serve_load.py                       # demo model, about 55 s
    .venv/bin/python benchmarks/serve_load.py --model runs/demo/model.folded.onnx -c 32 -t 10
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
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
def client_main(args: argparse.Namespace) -> None:
    """Run C threads of keep-alive requests for T seconds; print one JSON result on stdout."""
    import http.client

    shape = json.loads(args.shape)
    blob = np.random.default_rng(0).standard_normal(shape).astype("<f4").tobytes()
    header = json.dumps({"inputs": [{"name": args.input, "datatype": "FP32", "shape": shape,
                                     "parameters": {"binary_data_size": len(blob)}}],
                         "outputs": [{"name": "logits", "parameters": {"binary_data": True}}]}).encode()
    body = header + blob
    headers = {"Inference-Header-Content-Length": str(len(header)),
               "Content-Type": "application/octet-stream"}
    path = f"/v2/models/{args.name}/infer"
    latencies: list[list[float]] = [[] for _ in range(args.concurrency)]
    errors = [0] * args.concurrency
    start_at = time.monotonic() + 0.2
    stop_at = start_at + min(args.duration, MAX_SECONDS_PER_PHASE)

    def worker(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=30)
        while time.monotonic() < start_at:
            time.sleep(0.001)
        while time.monotonic() < stop_at:
            t0 = time.perf_counter()
            try:
                conn.request("POST", path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=30)
            if ok:
                latencies[index].append(time.perf_counter() - t0)
            else:
                errors[index] += 1
        conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(MAX_SECONDS_PER_PHASE + 30)
    elapsed = time.monotonic() - start_at
    flat = np.array([v for per in latencies for v in per]) * 1000
    print(json.dumps({"requests": int(flat.size), "errors": sum(errors), "seconds": elapsed,
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


def run_phase(model: Path, batching: bool, args: argparse.Namespace, shape: list[int]) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "bninception", "serve", "--model", str(model), "--port", str(port),
               "--max-batch", str(args.max_batch), "--max-delay-ms", str(args.max_delay_ms),
               "--threads", str(args.threads), "--max-queue", str(max(256, 4 * args.concurrency))]
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
            [sys.executable, __file__, "--client", "--port", str(port), "--shape", json.dumps(shape),
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
          "| vs in-process at the served mean batch |")
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
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-delay-ms", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: auto)")
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    # client-process mode (internal)
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
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
            on = run_phase(model, True, args, shape)
            off = run_phase(model, False, args, shape)
            batch = max(1, round(on["mean_batch"]))
            same = in_process(model, batch, shape, seconds, args.threads)
            rows += [(f"{n}: served, batching on", on, on["throughput"], batch, same),
                     (f"{n}: served, batching off", off, off["throughput"], 1, same),
                     (f"{n}: in-process ORT, batch {batch}", None, same, batch, same),
                     (f"{n}: in-process ORT, batch 1", None,
                      in_process(model, 1, shape, seconds, args.threads), 1, same)]
    print_table(rows)
    if args.json:
        print(json.dumps([{"run": label, "throughput": ips, "batch": batch, "served": r}
                          for label, r, ips, batch, _ in rows]))


if __name__ == "__main__":
    main()
