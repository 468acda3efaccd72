"""Hostile gRPC clients against ``bninception serve`` (the CLI, 127.0.0.1): memory and lock-out, bounded.

Starts the server on the tests' demo model with ``--buffer-memory-mb 64`` and HTTP + gRPC, then runs one
case after another, each with a normal client beside it, and prints one row per case: the server's RSS
(before, peak, after), the normal client's calls and failures, and what the server did to the attacker.

- flood: 1,000 gRPC calls, 200 at a time, half of them malformed messages just under the size limit;
- mixed: the same flood while 100 HTTP clients send 1 MiB bodies;
- headers-only: 600 streams on one connection that send headers and never a message;
- cut-short: 300 streams that send a message of the size limit minus its last byte;
- rapid-reset: streams opened and cancelled on one connection (CVE-2023-44487), up to 100,000 in 20 s;
- shm-truncate: a client truncates its registered shared-memory region while its requests are in flight.

    .venv/bin/python benchmarks/grpc_abuse.py
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))
from grpc_attacks import METHOD, OpenStreams, infer_message, rapid_reset
from serve_helpers import export_classifier, free_port, start_cli_server

sys.path.insert(0, str(Path(__file__).resolve().parent))
from soak import rss_mib

BUDGET_MB = 64
READ_TIMEOUT_S = 3.0


class RssPeak:
    """The server's RSS sampled every 20 ms on a thread while the block runs."""

    def __init__(self, pid: int) -> None:
        self.pid, self.before, self.peak, self._stop = pid, rss_mib(pid), 0.0, threading.Event()

    def __enter__(self) -> RssPeak:
        def sample() -> None:
            while not self._stop.wait(0.02):
                self.peak = max(self.peak, rss_mib(self.pid))

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.after = rss_mib(self.pid)


class NormalClient:
    """A well-behaved gRPC client calling in a loop on a thread of its own (5 s deadline each call)."""

    def __init__(self, port: int) -> None:
        import grpc

        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.call = self.channel.unary_unary(METHOD)
        self.message = infer_message()
        self.ok, self.failed, self.worst_s = 0, {}, 0.0
        self._stop = threading.Event()

    def one(self) -> None:
        import grpc

        start = time.perf_counter()
        try:
            self.call(self.message, timeout=5)
            self.ok += 1
        except grpc.RpcError as exc:
            code = exc.code().name
            self.failed[code] = self.failed.get(code, 0) + 1
        self.worst_s = max(self.worst_s, time.perf_counter() - start)

    @contextlib.contextmanager
    def beside(self) -> Iterator[NormalClient]:
        def loop() -> None:
            while not self._stop.wait(0.05):
                self.one()

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join()
            self.channel.close()

    def summary(self) -> str:
        failed = ", ".join(f"{n} {code}" for code, n in self.failed.items()) or "none failed"
        return f"{self.ok} ok, {failed}, slowest {self.worst_s:.2f} s"


def flood(port: int, limit: int, calls: int = 1000, at_once: int = 200) -> dict[str, int]:
    import grpc

    good, junk = infer_message(), os.urandom(limit - 1024)
    codes: dict[str, int] = {}
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", -1)]) as channel:
        call = channel.unary_unary(METHOD)

        def one(i: int) -> None:
            try:
                call(junk if i % 2 else good, timeout=30)
                code = "OK"
            except grpc.RpcError as exc:
                code = exc.code().name
                if code == "UNAVAILABLE":
                    print(exc.details())
            codes[code] = codes.get(code, 0) + 1

        with concurrent.futures.ThreadPoolExecutor(at_once) as pool:
            list(pool.map(one, range(calls)))
    return codes


def http_bodies(port: int, clients: int = 100, size: int = 1 << 20) -> dict[int, int]:
    body = os.urandom(size)
    statuses: dict[int, int] = {}

    def one(_: int) -> None:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v2/models/bninception/infer", data=body,
                                         headers={"Content-Type": "application/json"})
        try:
            status = urllib.request.urlopen(request, timeout=30).status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except OSError:
            status = 0
        statuses[status] = statuses.get(status, 0) + 1

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(clients * 2)))
    return statuses


def shm_truncate(port: int, requests: int = 300) -> str:
    """Truncate and restore a registered region while requests read it; the server must stay up."""
    import tritonclient.grpc as tgrpc

    key, size = f"/bn_abuse_{os.getpid()}", 4 * 32 * 32 * 4
    path = Path("/dev/shm") / key.lstrip("/")
    path.write_bytes(bytes(size))
    client = tgrpc.InferenceServerClient(f"127.0.0.1:{port}")
    client.register_system_shared_memory("abuse", key, size)
    stop = threading.Event()

    def truncate() -> None:
        with open(path, "r+b") as handle:
            while not stop.is_set():
                handle.truncate(0)
                handle.truncate(size)

    thread = threading.Thread(target=truncate, daemon=True)
    thread.start()
    codes: dict[str, int] = {}
    try:
        for _ in range(requests):
            item = tgrpc.InferInput("data", [4, 1, 32, 32], "FP32")
            item.set_shared_memory("abuse", size)
            try:
                client.infer("bninception", [item])
                code = "OK"
            except Exception as exc:  # tritonclient's InferenceServerException
                code = str(getattr(exc, "status", lambda: "error")())
            codes[code] = codes.get(code, 0) + 1
    finally:
        stop.set()
        thread.join()
        with contextlib.suppress(Exception):
            client.unregister_system_shared_memory("abuse")
        path.unlink(missing_ok=True)
    return ", ".join(f"{n} {code}" for code, n in codes.items())


def case(name: str, server: subprocess.Popen[str], port: int, attack: Callable[[], str]) -> None:
    with RssPeak(server.pid) as rss, NormalClient(port).beside() as normal:
        outcome = attack()
    alive = "up" if server.poll() is None else f"DEAD (rc {server.returncode})"
    print(f"| {name} | {rss.before:.0f} / {rss.peak:.0f} / {rss.after:.0f} | {normal.summary()} | {outcome} | "
          f"{alive} |", flush=True)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        model = export_classifier(Path(tmp) / "model.onnx")
        grpc_port = free_port()
        server, http_port = start_cli_server(model, "--grpc-port", str(grpc_port), "--buffer-memory-mb",
                                             str(BUDGET_MB), "--read-timeout-s", str(READ_TIMEOUT_S))
        try:
            limits = urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=10).read().decode()
            limit = int(float(next(line.rsplit(" ", 1)[1] for line in limits.splitlines()
                                   if 'name="max_message_bytes"' in line)))
            print(f"gRPC message limit {limit} bytes, buffer budget {BUDGET_MB} MiB, read timeout {READ_TIMEOUT_S} s")
            print("| case | RSS MiB before / peak / after | normal client | attacker | server |")
            print("|---|---|---|---|---|")
            case("flood", server, grpc_port, lambda: str(flood(grpc_port, limit)))

            def mixed() -> str:
                with concurrent.futures.ThreadPoolExecutor(1) as pool:
                    http = pool.submit(http_bodies, http_port)
                    grpc_codes = flood(grpc_port, limit)
                    return f"gRPC {grpc_codes}, HTTP {http.result()}"

            case("mixed HTTP + gRPC", server, grpc_port, mixed)

            def held(count: int, **message: int) -> str:
                streams = OpenStreams(grpc_port, count, **message)
                time.sleep(READ_TIMEOUT_S + 2)
                ended = streams.reset_by_server()
                streams.close()
                return (f"{ended} of {count - streams.refused} open streams ended by the server, "
                        f"{streams.refused} refused")

            case("headers-only x600", server, grpc_port, lambda: held(600))
            case("cut-short x300", server, grpc_port, lambda: held(300, declared=limit - 100, sent=limit - 101))

            def reset() -> str:
                sent, closed = rapid_reset(grpc_port, 100_000, 20)
                return f"{sent} streams sent, connection {'closed by the server' if closed else 'left open'}"

            case("rapid-reset", server, grpc_port, reset)
            case("shm-truncate", server, grpc_port, lambda: shm_truncate(grpc_port))
        finally:
            server.terminate()
            server.wait(20)


if __name__ == "__main__":
    main()
