"""Serve the app on Granian (its embedded server, public settings only), with the gRPC service beside it.

Granian bounds what happens before the app sees a request: the request head (``--max-header-bytes``,
431) must arrive within ``--read-timeout-s`` (else the connection is closed), which also closes idle
connections; ``--max-connections`` requests run at once (backpressure: more wait to be accepted). The
app is served through Granian's native interface (RSGI: the body in one piece, the answer in one call).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
import time
from typing import Any

from bninception.core.errors import BninceptionError

log = logging.getLogger("bninception")
MIN_BUFFER_BYTES = 8192  # hyper's smallest read buffer
DRAIN_MARGIN_S = 0.5  # bodies still arriving at shutdown are answered this long before the graceful time ends


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A bound, listening TCP socket (port 0: one the OS chooses): how a bad or busy port fails in one line."""
    if not 0 <= port <= 65535:
        raise BninceptionError(f"port must be in 0..65535, got {port}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(1)  # a port another server listens on fails here, before Granian tries it
    except (OSError, OverflowError) as exc:
        sock.close()
        raise BninceptionError(f"cannot listen on {host}:{port}: {exc}") from None
    return sock


def free_port(host: str, port: int) -> int:
    """``port`` once checked free (port 0: a free one chosen by the OS)."""
    with bind_socket(host, port) as sock:
        return int(sock.getsockname()[1])


def _not_experimental(record: logging.LogRecord) -> bool:
    """Drops Granian's warning that its embedded server is experimental (said once in docs/decisions.md)."""
    return "experimental" not in record.getMessage()


def granian_server(app: Any, host: str, port: int, access_log: bool = False) -> Any:
    """Granian's embedded server for ``app`` (from ``create_app``), with the limits of its ServeConfig."""
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings
    from granian.log import LogLevels
    from granian.server.embed import Server

    config = app.state.server.config
    logging.getLogger("_granian").addFilter(_not_experimental)  # one filter, however many servers start
    settings = HTTP1Settings(header_read_timeout=max(1, round(config.read_timeout_s * 1000)), keep_alive=True,
                             max_buffer_size=max(MIN_BUFFER_BYTES, config.max_header_bytes))
    return Server(app, address=host, port=port, interface=Interfaces.RSGI, http=HTTPModes.http1,
                  websockets=False, backlog=2048, backpressure=config.max_connections, http1_settings=settings,
                  log_level=LogLevels.info if access_log else LogLevels.warning, log_access=access_log)


async def serve_until(app: Any, host: str, port: int, stop: asyncio.Event, access_log: bool = False,
                      started: threading.Event | None = None) -> None:
    """Serve until ``stop`` is set; then requests still running get the graceful-shutdown time, and a
    body still arriving is answered 503 just before it ends."""
    server = granian_server(app, host, port, access_log)
    serving = asyncio.create_task(server.serve())
    try:
        await _wait_listening(host, port, serving)
        if started is not None:
            started.set()
        await asyncio.wait({serving, asyncio.create_task(stop.wait())}, return_when=asyncio.FIRST_COMPLETED)
        if serving.done():
            serving.result()  # it stopped on its own: say why
            return
        await _drain(app, server, serving)
    finally:
        app.state.server.close()


async def _drain(app: Any, server: Any, serving: asyncio.Task[Any]) -> None:
    graceful = app.state.server.config.graceful_shutdown_s
    drain = asyncio.get_running_loop().call_later(max(0.0, graceful - DRAIN_MARGIN_S), app.shutting_down)
    server.stop()
    try:
        await asyncio.wait_for(asyncio.shield(serving), graceful)
    except TimeoutError:
        log.warning("requests still open after the graceful shutdown time (%g s) were dropped", graceful)
    finally:
        drain.cancel()


async def _wait_listening(host: str, port: int, serving: asyncio.Task[Any], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if serving.done():
            serving.result()
            raise BninceptionError(f"the HTTP server on {host}:{port} stopped while starting")
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection(host, port)
            writer.close()
            return
        if time.monotonic() > deadline:
            raise BninceptionError(f"the HTTP server did not listen on {host}:{port} within {timeout:g} s")
        await asyncio.sleep(0.02)


def run_loop(main: Any) -> None:
    """Run the coroutine ``main`` on uvloop where it is installed (as uvicorn's "auto" loop does)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


def start_grpc_beside(app: Any, host: str, port: int | None) -> Any:
    if port is None:
        return None
    from bninception.serve.grpc_service import start_grpc

    return start_grpc(app.state.server, host, port)


def serve_forever(app: Any, host: str = "127.0.0.1", port: int = 8000, access_log: bool = False,
                  grpc_port: int | None = None) -> None:
    """Serve until SIGTERM or Ctrl-C, which shut down gracefully (exit 0), within the configured time."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve_until(app, host, port, stop, access_log)

    grpc = start_grpc_beside(app, host, grpc_port)
    try:
        run_loop(main())
    finally:
        if grpc is not None:
            grpc.stop(app.state.server.config.graceful_shutdown_s)


class BackgroundServer:
    """The app served on a thread of its own (tests, benchmarks, Docker checks); ``stop()`` ends it."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, grpc_port: int | None = None) -> None:
        self.app, self.host = app, host
        self.port = free_port(host, port)
        self.grpc = start_grpc_beside(app, host, grpc_port)
        self._started = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="bninception-http", daemon=True)
        self.thread.start()
        if not self._started.wait(30) or self._error is not None:
            self.stop()
            raise BninceptionError(f"the server did not start on {host}:{self.port}: {self._error}")

    def _run(self) -> None:
        async def main() -> None:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            await serve_until(self.app, self.host, self.port, self._stop, started=self._started)

        try:
            run_loop(main())
        except BaseException as exc:  # reported by the constructor
            self._error = exc
            self._started.set()

    def stop(self, timeout: float = 30.0) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(timeout)
        if self.grpc is not None:
            self.grpc.stop(1.0)
