"""Run the app under uvicorn: in the foreground (the CLI) or in a background thread (tests, benchmarks)."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from bninception.core.errors import BninceptionError


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening-ready TCP socket (port 0 = an ephemeral port chosen by the OS)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise BninceptionError(f"cannot listen on {host}:{port}: {exc}") from exc
    sock.set_inheritable(True)
    return sock


def _config(app: Any, access_log: bool) -> Any:
    import uvicorn

    return uvicorn.Config(app, log_level="warning", access_log=access_log, lifespan="on",
                          timeout_keep_alive=30, backlog=2048)


def serve_forever(app: Any, host: str = "127.0.0.1", port: int = 8000, access_log: bool = False) -> None:
    """Serve until interrupted (Ctrl-C / SIGTERM shut down gracefully)."""
    import uvicorn

    sock = bind_socket(host, port)
    uvicorn.Server(_config(app, access_log)).run(sockets=[sock])


@dataclass
class RunningServer:
    """A uvicorn server on a background thread; ``stop()`` shuts it down."""

    url: str
    host: str
    port: int
    server: Any
    thread: threading.Thread

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def start_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0, startup_timeout: float = 20.0
                    ) -> RunningServer:
    """Start ``app`` on ``host`` (an ephemeral port by default) and wait until it accepts requests."""
    import uvicorn

    sock = bind_socket(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    server = uvicorn.Server(_config(app, access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="bninception-uvicorn",
                              daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise BninceptionError(f"the server did not start on {bound_host}:{bound_port}")
        time.sleep(0.01)
    url_host = f"[{bound_host}]" if ":" in bound_host else bound_host
    return RunningServer(f"http://{url_host}:{bound_port}", bound_host, bound_port, server, thread)
