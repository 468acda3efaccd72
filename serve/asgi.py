"""The ASGI entry: V2 infer on its lean route, everything else through FastAPI, request metrics for all.

A client that leaves before its request arrived is counted (499, 408 or 503), never logged as an error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, MutableMapping
from types import SimpleNamespace
from typing import Any

from bninception.serve.budget import BufferBudget
from bninception.serve.http import GAVE_UP
from bninception.serve.infer import CLIENT_CLOSED, INFER_PATH, InferRoute
from bninception.serve.protocol import ProtocolError, check_declared_length
from bninception.serve.state import ServerState

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class ClientGone(Exception):
    """The connection ended (the client left, or it timed out) before the request had arrived."""


def gone_status(scope: Scope) -> int:
    """The status to count for a request whose client is gone: what the connection answered, or 499."""
    gave_up = scope.get(GAVE_UP)
    return int(gave_up[0]) if gave_up else CLIENT_CLOSED


async def read_body(receive: Receive, headers: dict[bytes, bytes], limit: int, buffers: BufferBudget,
                    held: list[int]) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes and with 503 when the
    bodies of all requests together would pass the buffer budget. ``held[0]`` counts the bytes taken
    from ``buffers``: the caller gives them back."""
    check_declared_length(headers, limit)
    chunks: list[bytes] = []
    total = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        if chunk:
            total += len(chunk)
            if total > limit:
                raise ProtocolError(413, f"request body exceeds the limit of {limit} bytes", {"Connection": "close"})
            buffers.take(len(chunk))
            held[0] += len(chunk)
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def endpoint_of(path: str) -> str:
    if path.endswith("/infer"):
        return "infer"
    if path == "/v1/classify":
        return "classify"
    if path.startswith("/v2/health"):
        return "health"
    if path.startswith("/v2"):
        return "metadata"
    return "metrics" if path == "/metrics" else "other"


class ServerApp:
    """The ASGI app ``create_app`` returns; ``.state.server`` is its :class:`ServerState`."""

    def __init__(self, server: ServerState, routed: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.server = server
        self.routed = routed
        self.route = InferRoute(server)
        self.state = SimpleNamespace(server=server)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            match = INFER_PATH.match(path) if path.endswith("/infer") else None
            if match is not None:
                await self.infer(scope, receive, send, match[1], match[2])
                return
            await self.other(scope, receive, send)
            return
        await self.routed(scope, receive, send)  # lifespan

    async def infer(self, scope: Scope, receive: Receive, send: Send, name: str, version: str | None) -> None:
        """POST /v2/models/{name}[/versions/{version}]/infer through :class:`InferRoute` (the connection
        protocol of server.py hands these requests to the route itself; this path serves the rest)."""
        route = self.route
        start = time.perf_counter()
        held = [0]
        answer: asyncio.Future[tuple[int, list[tuple[bytes, bytes]], bytes]] = \
            asyncio.get_running_loop().create_future()

        def reply(status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bool:
            if not answer.done():
                answer.set_result((status, headers, body))
            return True

        try:
            if scope["method"] != "POST":
                raise ProtocolError(405, f"{scope['method']} is not allowed here; use POST", {"Allow": "POST"})
            headers = dict(scope["headers"])
            route.check_head((name, version), headers)
            body = await read_body(receive, headers, route.max_body, route.buffers, held)
            route.run(headers, body, reply, start)
        except ProtocolError as exc:
            route.refuse(exc, reply, start)
        except ClientGone:
            route.count(gone_status(scope), start)
            return
        finally:
            if held[0]:
                self.server.buffers.give(held[0])
        try:
            status, out, content = await answer
        except asyncio.CancelledError:
            route.count(503, start)  # the server's graceful-shutdown time ran out
            raise
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-length", str(len(content)).encode()), *out]})
        await send({"type": "http.response.body", "body": content})

    async def other(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Every other route, through FastAPI, counted by endpoint and status."""
        start = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.routed(scope, receive, capture)
        finally:
            endpoint = endpoint_of(scope.get("path", ""))
            self.server.metrics.count(endpoint, status)
            if endpoint == "classify":
                self.server.metrics.latency.observe(time.perf_counter() - start)
