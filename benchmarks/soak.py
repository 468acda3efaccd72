"""Soak test of ``bninception serve``: good, bad, slow and aborting clients at once, on 127.0.0.1.

Starts the server (the CLI, shipped limits) on the demo model with recorded preprocessing, and for
T seconds (at most 120) runs, side by side:

- good: keep-alive V2 infer requests with random inputs, each answer checked against in-process
  ONNX Runtime (1e-4), and PNG uploads to /v1/classify checked against the expected top-1;
- bad: malformed, pathological and over-limit requests (bad JSON, JSON nested 5000 deep, 1e310,
  NaN, wrong shapes, unknown models, a 3 MiB body, an 8 MiB header, 200 headers, garbage images,
  decode bombs: 500 KB PNGs of 8000x7999 16-bit RGBA), each expecting its 4xx (or 503 when busy);
- slow: slowloris heads, bodies that stop halfway, idle connections (each expecting 408 or a close);
- abort: uploads cut off halfway, some with a TCP reset.

Prints requests by kind, wrong answers, unexpected statuses (5xx included), the longest a good request
took (its stall), the server's RSS (at start, peak, and after the load), and the time SIGTERM took
with a partial request still open.

    .venv/bin/python benchmarks/soak.py            # 60 s
    .venv/bin/python benchmarks/soak.py -t 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))  # serve_helpers: the test model
from serve_helpers import png

MAX_SECONDS = 120
MODEL = "bninception"
INFER = f"/v2/models/{MODEL}/infer"


def png_bomb(width: int = 8000, height: int = 7999) -> bytes:
    """A ~500 KB PNG of 16-bit RGBA that decodes to about 256 MB (just under the pixel cap)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\0" + bytes(width * 8)
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 6, 0, 0, 0))
            + chunk(b"IDAT", data) + chunk(b"IEND", b""))


def request_bytes(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    head = {"Host": "127.0.0.1", "Content-Length": str(len(body)), **(headers or {})}
    return (f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items()) + "\r\n").encode() \
        + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(lines[0].split()[1]), headers, body


@dataclass
class Tally:
    requests: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    wrong: int = 0
    good_latency: list[float] = field(default_factory=list)
    longest: dict[str, float] = field(default_factory=dict)  # the longest good request per kind, seconds

    def good(self, kind: str, seconds: float) -> None:
        self.good_latency.append(seconds)
        self.longest[kind] = max(self.longest.get(kind, 0.0), seconds)

    def expect(self, kind: str, status: int | None, allowed: set[int | None]) -> None:
        self.requests[kind] += 1
        self.statuses[f"{kind} {status}"] += 1
        if status not in allowed:
            self.unexpected.append(f"{kind}: {status} (expected {sorted(map(str, allowed))})")


class Soak:
    def __init__(self, port: int, stop_at: float, reference: Any, tally: Tally) -> None:
        self.port, self.stop_at, self.reference, self.tally = port, stop_at, reference, tally
        rng = np.random.default_rng(0)
        self.inputs = rng.standard_normal((64, 1, 1, 32, 32)).astype(np.float32)
        self.expected = [reference(x) for x in self.inputs]
        digits = [np.where(rng.random((40, 40)) > 0.7, 255, 0).astype(np.uint8) for _ in range(8)]
        self.images = [(png(d), int(np.argmax(self._classify_reference(d)))) for d in digits]
        self.bomb = png_bomb()
        self.cases = self.bad_cases()  # built before the clock starts (the 64 MiB gzip bomb takes a while)

    def _classify_reference(self, pixels: np.ndarray) -> np.ndarray:
        from PIL import Image

        from bninception.model.data import digits_preprocess

        return self.reference(digits_preprocess(32)(Image.fromarray(pixels))[None])[0]  # type: ignore[no-any-return]

    def running(self) -> bool:
        return time.monotonic() < self.stop_at

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port, limit=1 << 22)

    async def exchange(self, data: bytes) -> tuple[int | None, bytes]:
        """One request on a new connection: its status (None when the server closed without one)."""
        reader, writer = await self.connect()
        try:
            writer.write(data)
            await writer.drain()
            status, _, body = await asyncio.wait_for(read_response(reader), 60)
            return status, body
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return None, b""
        finally:
            writer.close()

    # -- actors -----------------------------------------------------------------------------
    async def good_infer(self, seed: int) -> None:
        rng = random.Random(seed)
        reader, writer = await self.connect()
        while self.running():
            i = rng.randrange(len(self.inputs))
            blob = self.inputs[i].tobytes()
            header = json.dumps({"id": str(i), "inputs": [{"name": "data", "datatype": "FP32", "shape": [1, 1, 32, 32],
                                 "parameters": {"binary_data_size": len(blob)}}],
                                 "outputs": [{"name": "logits", "parameters": {"binary_data": True}}]}).encode()
            start = time.perf_counter()
            try:
                writer.write(request_bytes("POST", INFER, header + blob,
                                           {"Inference-Header-Content-Length": str(len(header))}))
                status, headers, body = await read_response(reader)
            except (ConnectionError, asyncio.IncompleteReadError):
                self.tally.expect("good infer", None, {200})
                reader, writer = await self.connect()
                continue
            self.tally.good("infer", time.perf_counter() - start)
            self.tally.expect("good infer", status, {200})
            if status == 200:
                length = int(headers["inference-header-content-length"])
                got = np.frombuffer(body[length:], "<f4").reshape(1, -1)
                if json.loads(body[:length]).get("id") != str(i) or not np.allclose(got, self.expected[i], atol=1e-4):
                    self.tally.wrong += 1
        writer.close()

    async def good_classify(self, seed: int) -> None:
        rng = random.Random(seed)
        while self.running():
            data, top = self.images[rng.randrange(len(self.images))]
            start = time.perf_counter()
            status, body = await self.exchange(request_bytes("POST", "/v1/classify", data,
                                                             {"Content-Type": "image/png"}))
            self.tally.good("classify", time.perf_counter() - start)
            self.tally.expect("good classify", status, {200})
            if status == 200 and json.loads(body)["top"][0]["index"] != top:
                self.tally.wrong += 1

    def bad_cases(self) -> list[tuple[str, bytes, set[int | None]]]:
        def infer(obj: Any, **headers: str) -> bytes:
            return request_bytes("POST", INFER, json.dumps(obj).encode(), headers)

        tensor = {"name": "data", "datatype": "FP32", "shape": [1, 1, 32, 32], "data": [0.0] * 1024}
        busy: set[int | None] = {503}
        return [
            ("bad json", request_bytes("POST", INFER, b'{"inputs": ['), {400}),
            ("deep json", request_bytes("POST", INFER, b"[" * 5000 + b"]" * 5000), {400}),
            ("huge int", infer({"inputs": [{**tensor, "data": [10 ** 310] + [0] * 1023}]}), {400}),
            ("nan", request_bytes("POST", INFER, json.dumps({"inputs": [tensor]}).replace("0.0", "NaN", 1).encode()),
             {200}),  # non-finite inputs reach the model, as in Triton
            ("wrong shape", infer({"inputs": [{**tensor, "shape": [1, 3, 32, 32]}]}), {400}),
            ("unknown model", request_bytes("POST", "/v2/models/x/infer", b"{}"), {404}),
            ("gzip bomb", request_bytes("POST", INFER, zlib.compress(b"[" * (64 << 20)),
                                        {"Content-Encoding": "deflate"}), {413}),
            ("body over limit", request_bytes("POST", INFER, b"[" * (3 << 20), {"Connection": "close"}), {413}),
            ("header bomb", b"GET /v2 HTTP/1.1\r\nX: " + b"a" * (8 << 20) + b"\r\n\r\n", {431}),
            ("200 headers", b"GET /v2 HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(200)) + b"\r\n",
             {431}),
            ("garbage image", request_bytes("POST", "/v1/classify", b"\x89PNG garbage"), {400}),
            ("garbage http", b"\x16\x03\x01 not http\r\n\r\n", {400, None}),
            ("decode bomb", request_bytes("POST", "/v1/classify", self.bomb), {200, *busy}),
        ]

    async def bad(self, seed: int, skip: set[str]) -> None:
        rng = random.Random(seed)
        cases = [case for case in self.cases if case[0] not in skip]
        while self.running():
            name, data, allowed = cases[rng.randrange(len(cases))]
            status, _ = await self.exchange(data)
            self.tally.expect(f"bad: {name}", status, allowed)

    async def slow(self, seed: int) -> None:
        rng = random.Random(seed)
        while self.running():
            kind = rng.choice(["slow head", "half body", "idle"])
            reader, writer = await self.connect()
            try:
                if kind == "slow head":
                    for byte in b"POST /v2/models/bninception/infer HTTP/1.1\r\nHost: x\r\nX-Slow: ":
                        writer.write(bytes([byte]))
                        await asyncio.sleep(0.5)
                        if reader.at_eof():
                            break
                elif kind == "half body":
                    writer.write(request_bytes("POST", INFER, b"{" * 1000)[:-500])
                try:
                    status, _, _ = await asyncio.wait_for(read_response(reader), 60)
                except (ConnectionError, asyncio.IncompleteReadError):
                    status = None
            finally:
                writer.close()
            self.tally.expect(f"slow: {kind}", status, {408, None})

    async def abort(self, seed: int) -> None:
        rng = random.Random(seed)
        while self.running():
            _reader, writer = await self.connect()
            writer.write(request_bytes("POST", INFER, b"[" * 100_000)[:50_000])
            await writer.drain()
            await asyncio.sleep(rng.random() * 0.2)
            if rng.random() < 0.5:  # a reset rather than a close
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.close()
            self.tally.expect("abort", None, {None})

    async def run(self, mix: set[str], skip: set[str]) -> None:
        actors = [self.good_infer(i) for i in range(8)] + [self.good_classify(100)]
        if "bad" in mix:
            actors += [self.bad(200 + i, skip) for i in range(4)]
        if "slow" in mix:
            actors += [self.slow(300 + i) for i in range(4)]
        if "abort" in mix:
            actors += [self.abort(400 + i) for i in range(2)]
        await asyncio.gather(*actors)


def rss_mib(pid: int, key: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def server_status(url: str) -> dict[str, float]:
    text = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(("bninception_requests_total", "bninception_rejected_total",
                            "bninception_request_latency_seconds_bucket")):
            name, value = line.rsplit(" ", 1)
            found[name] = float(value)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-t", "--duration", type=float, default=60.0, help=f"seconds (at most {MAX_SECONDS})")
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    parser.add_argument("--mix", default="bad,slow,abort", help="hostile clients beside the good ones "
                        "(default: %(default)s)")
    parser.add_argument("--skip", default="", help="bad cases to leave out, comma-separated (e.g. 'decode bomb')")
    args = parser.parse_args()
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # writes after the server closed are expected
    duration = min(args.duration, MAX_SECONDS)

    from bninception.core.runner import OrtRunner

    with tempfile.TemporaryDirectory() as tmp:
        from serve_helpers import export_classifier, start_cli_server

        model = export_classifier(Path(tmp) / "model.onnx")
        reference = OrtRunner(model).run
        server, port = start_cli_server(model, stderr=subprocess.PIPE)
        url = f"http://127.0.0.1:{port}"
        try:
            start_rss = rss_mib(server.pid)
            tally = Tally()
            soak = Soak(port, 0.0, reference, tally)
            soak.stop_at = time.monotonic() + duration
            samples: list[float] = []

            async def sample() -> None:
                while soak.running():
                    samples.append(rss_mib(server.pid))
                    await asyncio.sleep(0.1)

            async def everything() -> None:
                await asyncio.gather(soak.run(set(args.mix.split(",")), set(args.skip.split(","))), sample())

            print(f"soak: {duration:g} s against {url} (pid {server.pid})", file=sys.stderr)
            asyncio.run(everything())
            time.sleep(2.0)  # let the lingering connections close and the heap settle
            after_rss, peak_rss = rss_mib(server.pid), rss_mib(server.pid, "VmHWM")
            counted = server_status(url)
            shutdown_s = sigterm_with_partial_request(server, port)
        finally:
            if server.poll() is None:
                server.kill()
            _, err = server.communicate(timeout=30)

    latency = np.array(tally.good_latency) * 1000
    fives = sum(v for k, v in tally.statuses.items() if k.split()[-1].startswith("5"))
    unexpected_5xx = sum(1 for u in tally.unexpected if u.rsplit(": ", 1)[1].startswith("5"))
    server_500 = sum(v for k, v in counted.items() if 'code="500"' in k)
    result = {
        "seconds": duration, "requests": sum(tally.requests.values()), "by_kind": dict(tally.requests),
        "wrong_answers": tally.wrong, "unexpected": len(tally.unexpected), "unexpected_5xx": unexpected_5xx,
        "5xx_answers": fives, "server_500s": server_500, "good_requests": int(latency.size),
        "good_p50_ms": float(np.percentile(latency, 50)), "good_p99_ms": float(np.percentile(latency, 99)),
        "longest_good_stall_ms": float(latency.max()), "rss_start_mib": start_rss, "rss_peak_mib": peak_rss,
        "rss_max_sampled_mib": max(samples, default=float("nan")), "rss_after_mib": after_rss,
        "sigterm_exit_s": shutdown_s, "tracebacks_in_server_log": err.count("Traceback"),
    }
    print_summary(result, tally, counted)
    if args.json:
        print(json.dumps(result))


def print_summary(result: dict[str, Any], tally: Tally, counted: dict[str, float]) -> None:
    """The summary row, the requests by kind and status, and the server's own count of slow requests."""
    start_rss, peak_rss, after_rss = result["rss_start_mib"], result["rss_peak_mib"], result["rss_after_mib"]
    unexpected_5xx, server_500, shutdown_s = result["unexpected_5xx"], result["server_500s"], result["sigterm_exit_s"]
    print("\n| requests | wrong answers | unexpected statuses | unexpected 5xx | server 500s | good p50 / p99 ms "
          "| longest good stall | RSS start / peak / after | SIGTERM with a partial request |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {result['requests']} | {tally.wrong} | {len(tally.unexpected)} | {unexpected_5xx} | {server_500} "
          f"| {result['good_p50_ms']:.1f} / {result['good_p99_ms']:.1f} | {result['longest_good_stall_ms']:.0f} ms "
          f"| {start_rss:.0f} / {peak_rss:.0f} / {after_rss:.0f} MiB | exit after {shutdown_s:.1f} s |")
    print("\nby kind: " + ", ".join(f"{k} {v}" for k, v in sorted(tally.requests.items())))
    print("statuses: " + ", ".join(f"{k}: {v}" for k, v in sorted(tally.statuses.items())))
    if tally.unexpected:
        print("unexpected: " + "; ".join(Counter(tally.unexpected).keys()))
    over = counted.get('bninception_request_latency_seconds_bucket{le="+Inf"}', 0) - \
        counted.get('bninception_request_latency_seconds_bucket{le="0.5"}', 0)
    print("longest good request: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in sorted(tally.longest.items())))
    print(f"server side: {over:.0f} infer or classify requests took over 0.5 s from arrival to answer (the decode "
          "bombs among them)")


def sigterm_with_partial_request(server: subprocess.Popen[str], port: int) -> float:
    """Open a request that never finishes, SIGTERM the server, and time until it has exited."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request_bytes("POST", INFER, b"{" * 4096)[:-2000])
        time.sleep(0.2)
        start = time.monotonic()
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            return float("inf")
        return time.monotonic() - start


if __name__ == "__main__":
    main()
