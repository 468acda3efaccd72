"""What the HTTP handlers see and give back, whatever the server interface: the request (headers, path
parameters, query, a bounded body) and the answer (status, headers, body), with one error encoder."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from bninception.serve.protocol import ProtocolError, check_declared_length

if TYPE_CHECKING:
    from bninception.serve.http_app import ServerApp

Headers = list[tuple[bytes, bytes]]
Answer = tuple[int, Headers, bytes]
CLIENT_CLOSED = 499  # nginx's "client closed request": counted, never sent
CLOSE = {"Connection": "close"}
JSON = (b"content-type", b"application/json")
SMALL_PIECES = 1024  # a body that has arrived in this many pieces...
MIN_PIECE_BYTES = 64  # ...averaging fewer bytes each is refused (each piece costs the event loop a pass)


class ClientGone(Exception):
    """The client left before its request had arrived (counted as 499, nothing sent)."""


def error_answer(exc: ProtocolError) -> Answer:
    """The one encoding of a refusal, for every route: ``{"error": message}`` with its status and headers."""
    headers = [JSON, *((k.lower().encode(), v.encode()) for k, v in exc.headers.items())]
    return exc.status, headers, json.dumps({"error": exc.message}).encode()


def json_answer(obj: Any, status: int = 200) -> Answer:
    return status, [JSON], json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()


class Request:
    """One HTTP request as the handlers see it; a server interface (asgi.py, rsgi.py) supplies ``read``."""

    __slots__ = ("app", "headers", "held", "params", "query_string", "start")

    def __init__(self, app: ServerApp, headers: dict[bytes, bytes], query_string: str, params: dict[str, str],
                 start: float) -> None:
        self.app, self.headers, self.query_string, self.params, self.start = app, headers, query_string, params, start
        self.held = 0  # body bytes taken from the buffer budget, given back when the answer is done

    def query(self, name: str) -> str | None:
        from urllib.parse import parse_qs

        values = parse_qs(self.query_string).get(name)
        return values[-1] if values else None

    async def body(self, limit: int) -> bytes:
        """The whole body: 413 past ``limit``, 503 past the buffer budget, 408 past the read deadline or
        when it trickles in, 503 at shutdown; ClientGone when the client leaves first."""
        check_declared_length(self.headers, limit)
        return await self.app.within_deadline(self, self.read(limit))

    async def read(self, limit: int) -> bytes:
        raise NotImplementedError

    def take(self, size: int) -> None:
        """Hold ``size`` more body bytes (503 when the buffer budget is spent)."""
        self.app.server.buffers.take(size)
        self.held += size


class BodyParts:
    """A body arriving in pieces: bounded by its limit, the buffer budget and the small-pieces rule."""

    def __init__(self, request: Request, limit: int) -> None:
        self.request, self.limit = request, limit
        self.chunks: list[bytes] = []
        self.total = self.pieces = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self.pieces += 1
        if self.total > self.limit:
            raise ProtocolError(413, f"request body exceeds the limit of {self.limit} bytes", CLOSE)
        if self.pieces > SMALL_PIECES and self.total < self.pieces * MIN_PIECE_BYTES:
            self.request.app.server.metrics.refused("slow_sender")
            raise ProtocolError(408, f"the request arrives in too many small pieces ({self.pieces} pieces of "
                                     f"{self.total // self.pieces} bytes on average)", CLOSE)
        self.request.take(len(chunk))
        self.chunks.append(chunk)

    def joined(self) -> bytes:
        return self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
