"""The app on Granian's native interface (RSGI): a body with a declared length arrives in one piece
(buffered by Granian, never handled byte by byte here), the answer leaves in one call."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

from granian.rsgi import ProtocolClosed

from bninception.serve.dispatch import CLIENT_CLOSED, BodyParts, ClientGone, Request

if TYPE_CHECKING:
    from bninception.serve.http_app import ServerApp

LINGER_S = 2.0  # a refused upload is read and dropped for at most this long...
LINGER_BYTES = 64 << 20  # ...or this many bytes, so that a client that sends it whole reads the answer


class RsgiRequest(Request):
    __slots__ = ("complete", "proto")

    def __init__(self, app: ServerApp, scope: Any, proto: Any, params: dict[str, str], start: float) -> None:
        super().__init__(app, {k.encode("latin-1"): v.encode("latin-1") for k, v in scope.headers.items()},
                         scope.query_string, params, start)
        self.proto = proto
        self.complete = False  # the whole body was read

    async def read(self, limit: int) -> bytes:
        declared = self.headers.get(b"content-length")
        try:
            if declared is None:  # chunked: counted piece by piece
                parts = BodyParts(self, limit)
                async for chunk in self.proto:
                    parts.add(chunk)
                self.complete = True
                return parts.joined()
            self.take(int(declared))  # checked against the limit already
            body = bytes(await self.proto())
            self.complete = True
            return body
        except (ProtocolClosed, ConnectionError):
            raise ClientGone from None


def has_body(headers: dict[bytes, bytes]) -> bool:
    return headers.get(b"content-length", b"0") != b"0" or b"transfer-encoding" in headers


async def linger(request: RsgiRequest) -> None:
    """Read and drop what is left of a refused upload, briefly: answering while the client still sends
    makes the connection close under it (a reset, not the answer) for clients that send ``Connection:
    close`` and the whole body before they read (curl, urllib)."""

    async def drop() -> None:
        dropped = 0
        async for chunk in request.proto:
            dropped += len(chunk)
            if dropped > LINGER_BYTES:
                return

    with contextlib.suppress(Exception):
        await asyncio.wait_for(drop(), LINGER_S)


async def serve_rsgi(app: ServerApp, scope: Any, proto: Any) -> None:
    start = time.perf_counter()
    route = app.router.resolve(scope.method, scope.path)
    request = RsgiRequest(app, scope, proto, route.params, start)
    answer = await app.respond(route, request, len(scope.headers.keys()))
    if answer is None:
        return
    status, headers, body = answer
    if status >= 400 and status != 408 and not app.draining and not request.complete and has_body(request.headers):
        await linger(request)
    try:
        proto.response_bytes(status, [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers], body)
    except (OSError, RuntimeError):  # the client left (RSGIProtocolClosed is a RuntimeError)
        status = CLIENT_CLOSED
    app.count(route.endpoint, status, start)
