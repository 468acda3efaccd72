"""Run the app under uvicorn in the foreground, with the gRPC service beside it."""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
from collections.abc import Iterator
from typing import Any

from bninception.core.errors import BninceptionError


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening-ready TCP socket (port 0 = an ephemeral port chosen by the OS)."""
    if not 0 <= port <= 65535:
        raise BninceptionError(f"port must be in 0..65535, got {port}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except (OSError, OverflowError) as exc:
        sock.close()
        raise BninceptionError(f"cannot listen on {host}:{port}: {exc}") from None
    sock.set_inheritable(True)
    return sock


def uvicorn_config(app: Any, access_log: bool = False) -> Any:
    """uvicorn's Config for ``app`` (from ``create_app``) with the limits of its ServeConfig."""
    import uvicorn

    from bninception.serve.http import protocol_class

    state = app.state.server
    config = state.config
    route = getattr(app, "route", None)  # the V2 infer route, served by the connection itself
    return uvicorn.Config(app, http=protocol_class(state, route), ws="none", lifespan="on",
                          log_level="info" if access_log else "warning", access_log=access_log, backlog=2048,
                          proxy_headers=False,
                          timeout_keep_alive=config.keep_alive_s,  # type: ignore[arg-type]
                          timeout_graceful_shutdown=config.graceful_shutdown_s,  # type: ignore[arg-type]
                          limit_concurrency=config.max_connections)


def _foreground_server(config: Any) -> Any:
    """A uvicorn Server that, after a graceful shutdown on SIGTERM / Ctrl-C, returns (exit 0) instead
    of raising the signal again (uvicorn's default, which kills the process before the gRPC service
    and everything after the server have stopped)."""
    import uvicorn
    from uvicorn.server import HANDLED_SIGNALS

    class Server(uvicorn.Server):  # type: ignore[misc]
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            original = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED_SIGNALS}
            try:
                yield
            finally:
                for sig, handler in original.items():
                    signal.signal(sig, handler)

    return Server(config)


def start_grpc_beside(app: Any, host: str, port: int | None) -> Any:
    if port is None:
        return None
    from bninception.serve.grpc_service import start_grpc

    return start_grpc(app.state.server, host, port)


def serve_forever(app: Any, host: str = "127.0.0.1", port: int = 8000, access_log: bool = False,
                  sock: socket.socket | None = None, grpc_port: int | None = None) -> None:
    """Serve until interrupted (Ctrl-C / SIGTERM shut down gracefully, within the configured time)."""
    sock = sock or bind_socket(host, port)
    grpc = start_grpc_beside(app, host, grpc_port)
    try:
        _foreground_server(uvicorn_config(app, access_log)).run(sockets=[sock])
    finally:
        if grpc is not None:
            grpc.stop(app.state.server.config.graceful_shutdown_s)
