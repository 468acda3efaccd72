"""The HTTP app: one dispatch over the route table for both server interfaces (ASGI, Granian's RSGI),
with the request limits that need the request, and metrics for every answer.

The HTTP server bounds the request head and idle connections (serve/server.py); here: header count
(431), body size (413), the body's read deadline and trickled bodies (408), the shared buffer budget
(503), a client that leaves (499) and a body still arriving at shutdown (503). Client mistakes are
answered ``{"error": "..."}`` with a 4xx, never a 500.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from types import SimpleNamespace
from typing import Any

from bninception.serve.asgi import lifespan, serve_asgi
from bninception.serve.dispatch import CLIENT_CLOSED, CLOSE, Answer, ClientGone, Request, error_answer
from bninception.serve.protocol import ProtocolError
from bninception.serve.routes import Resolved, Router
from bninception.serve.rsgi import serve_rsgi
from bninception.serve.state import ServerState

Why = tuple[int, str, str]  # status, message, metric reason


class ServerApp:
    """The app ``create_app`` returns, an ASGI and an RSGI application; ``.state.server`` is its ServerState."""

    def __init__(self, server: ServerState, router: Router) -> None:
        self.server = server
        self.router = router
        self.state = SimpleNamespace(server=server)
        self.reading: dict[asyncio.Task[Any], Why | None] = {}  # bodies arriving -> why they were cut
        self.in_flight = 0
        self.draining = False  # SIGTERM: nothing waits for a client any more
        server.metrics.gauge("bninception_http_requests_in_flight", "HTTP requests being read or answered now",
                             lambda: float(self.in_flight))

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await serve_asgi(self, scope, receive, send)
        elif scope["type"] == "lifespan":
            await lifespan(self, receive, send)

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        if scope.proto == "http":
            await serve_rsgi(self, scope, proto)

    async def respond(self, route: Resolved, request: Request, header_count: int) -> Answer | None:
        """The handler's answer, or a refusal's; None when the client left first (counted here)."""
        self.in_flight += 1
        try:
            self.check_head(header_count)
            return await route.handler(request)
        except ProtocolError as exc:
            return error_answer(exc)
        except ClientGone:
            self.count(route.endpoint, CLIENT_CLOSED, request.start)
            return None
        except asyncio.CancelledError:
            self.count(route.endpoint, 503, request.start)  # the server's graceful-shutdown time ran out
            raise
        finally:
            self.in_flight -= 1
            if request.held:
                self.server.buffers.give(request.held)
                request.held = 0

    def check_head(self, header_count: int) -> None:
        limit = self.server.config.max_headers
        if header_count > limit:
            self.server.metrics.refused("too_many_headers")
            raise ProtocolError(431, f"more than {limit} header fields", CLOSE)

    def count(self, endpoint: str, status: int, start: float) -> None:
        metrics = self.server.metrics
        metrics.count(endpoint, status)
        if endpoint in ("infer", "classify"):
            seconds = time.perf_counter() - start
            metrics.latency.observe(seconds)
            if endpoint == "infer":
                self.server.stats.request(status == 200, seconds)

    # -- the read deadline and shutdown ----------------------------------------------------------
    async def within_deadline(self, request: Request, reading: Awaitable[bytes]) -> bytes:
        """``reading`` (a body), cut with 408 at the read deadline or with 503 at shutdown."""
        task = asyncio.current_task()
        assert task is not None
        config = self.server.config
        self.reading[task] = None
        timer = asyncio.get_running_loop().call_later(
            max(0.0, config.read_timeout_s - (time.perf_counter() - request.start)), self.cut, task,
            (408, f"the request did not arrive within {config.read_timeout_s:g} s", "read_timeout"))
        try:
            return await reading
        except asyncio.CancelledError:
            why = self.reading.get(task)
            if why is None:
                raise
            task.uncancel()
            self.server.metrics.refused(why[2])
            raise ProtocolError(why[0], why[1], CLOSE) from None
        finally:
            timer.cancel()
            self.reading.pop(task, None)

    def cut(self, task: asyncio.Task[Any], why: Why) -> None:
        """Stop reading ``task``'s body: it is answered ``why``."""
        if task in self.reading and self.reading[task] is None:
            self.reading[task] = why
            task.cancel()

    def shutting_down(self) -> None:
        """SIGTERM: every body still arriving is answered 503 (called just before the graceful time ends)."""
        self.draining = True
        for task in list(self.reading):
            self.cut(task, (503, "the server is shutting down", "shutdown"))
