"""The app as an ASGI application (any ASGI server, ``httpx.ASGITransport``)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from bninception.serve.dispatch import CLIENT_CLOSED, BodyParts, ClientGone, Request

if TYPE_CHECKING:
    from bninception.serve.http_app import ServerApp

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class AsgiRequest(Request):
    __slots__ = ("receive",)

    def __init__(self, app: ServerApp, scope: Scope, receive: Receive, params: dict[str, str], start: float) -> None:
        super().__init__(app, dict(scope["headers"]), scope.get("query_string", b"").decode("latin-1"), params, start)
        self.receive = receive

    async def read(self, limit: int) -> bytes:
        parts = BodyParts(self, limit)
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            if chunk:
                parts.add(chunk)
            if not message.get("more_body", False):
                return parts.joined()


async def serve_asgi(app: ServerApp, scope: Scope, receive: Receive, send: Send) -> None:
    start = time.perf_counter()
    route = app.router.resolve(scope["method"], scope["path"])
    request = AsgiRequest(app, scope, receive, route.params, start)
    answer = await app.respond(route, request, len(scope["headers"]))
    if answer is None:
        return
    status, headers, body = answer
    try:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-length", str(len(body)).encode()), *headers]})
        await send({"type": "http.response.body", "body": body})
    except (OSError, RuntimeError):  # the client left while we answered
        status = CLIENT_CLOSED
    app.count(route.endpoint, status, start)


async def lifespan(app: ServerApp, receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            app.server.close()
            await send({"type": "lifespan.shutdown.complete"})
            return
