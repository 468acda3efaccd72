"""The HTTP/1.1 connection: uvicorn's httptools protocol plus the limits it lacks (docs/decisions.md).

Request head bounded (431); a request must arrive whole within ``read_timeout_s`` and not in many tiny
pieces (408); idle connections close after ``keep_alive_s``; a request arriving at shutdown gets 503;
``Upgrade`` is ignored; V2 infer is served here without an ASGI task.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from bninception.serve.state import ServerState

LINGER_S = 2.0  # lingering close: read and discard for at most this long...
SMALL_PIECES = 1024  # a request that has arrived in this many reads...
MIN_PIECE_BYTES = 64  # ...averaging fewer bytes each is refused (a 1-byte-at-a-time sender costs a loop pass a byte)
LINGER_BYTES = 64 << 20  # ...or this many bytes
GAVE_UP = "bninception.gave_up"  # scope key: (status, reason) when the connection answered for the app


def error_response(status: int, message: str) -> bytes:
    """A complete ``{"error": message}`` response that closes the connection."""
    body = json.dumps({"error": message}).encode()
    return (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


class _NoEvent:
    def set(self) -> None:
        pass


class _Direct:
    """A request the connection serves itself: it stands where uvicorn keeps its request cycle."""

    def __init__(self, target: Any, headers: dict[bytes, bytes], keep_alive: bool) -> None:
        self.target, self.headers, self.keep_alive = target, headers, keep_alive
        self.chunks: list[bytes] = []
        self.size = self.held = 0
        self.start = time.perf_counter()
        self.running = self.response_started = self.response_complete = self.disconnected = False
        self.scope: dict[str, Any] = {}
        self.path = ""
        self.message_event = _NoEvent()


class _Refused(Exception):
    """Raised in a parser callback to stop parsing a request the limits refuse."""


class _CycleTransport:
    """The transport uvicorn's request cycle writes to: one step's writes leave together, and a
    close while the request is still arriving lingers."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: Any) -> None:
        self._protocol = protocol

    def write(self, data: bytes) -> None:
        self._protocol.queue_write(data)

    def close(self) -> None:
        self._protocol.close_after_response()

    def is_closing(self) -> bool:
        return bool(self._protocol.transport.is_closing())

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._protocol.transport.get_extra_info(name, default)


def protocol_class(state: ServerState, route: Any = None) -> type[asyncio.Protocol]:
    """uvicorn's ``HttpToolsProtocol`` with the limits of ``state.config``, reporting connection events
    to ``state`` and serving ``route`` (an InferRoute) itself; give it to ``uvicorn.Config(http=...)``."""
    import urllib.parse

    import httptools
    from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

    from bninception.serve.protocol import ProtocolError

    limits, hooks = state.config, state

    class LimitedHttpToolsProtocol(HttpToolsProtocol):  # type: ignore[misc]
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._head_left: int | None = limits.max_header_bytes  # None while a body arrives
            self._heads = 0
            self._fields = 0
            self._reading = False  # a request has begun and not fully arrived
            self._refusal: tuple[int, str, str] | None = None
            self._read_timer: asyncio.TimerHandle | None = None
            self._linger_left = -1  # >= 0 while lingering
            self._shutting_down = False
            self._out: list[bytes] = []
            self._pieces = self._piece_bytes = 0
            self._upgrade_body: int | None = None  # body bytes still to read after an ignored Upgrade
            self._cycle_transport = _CycleTransport(self)
            hooks.opened()
            # uvicorn arms its keep-alive timer after each response; arm it for the first request too
            self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive,
                                                                self.timeout_keep_alive_handler)

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_read_timer()
            hooks.closed()
            if isinstance(self.cycle, _Direct):
                self._direct_gone(self.cycle, 499)
            super().connection_lost(exc)

        # -- bytes in ---------------------------------------------------------------------------
        def data_received(self, data: bytes) -> None:
            if self._linger_left >= 0:
                self._linger_left -= len(data)
                if self._linger_left < 0:
                    self.transport.close()
                return
            self._unset_keepalive_if_required()  # any byte means the connection is not idle
            self._pieces += 1
            self._piece_bytes += len(data)
            if self._pieces > SMALL_PIECES and self._piece_bytes < self._pieces * MIN_PIECE_BYTES:
                self._refuse(408, f"the request arrives in too many small pieces ({self._pieces} reads of "
                                  f"{self._piece_bytes // self._pieces} bytes on average)", "slow_sender")
                return
            if self._upgrade_body is not None:
                self._read_upgrade_body(data)
                return
            if self._head_left is not None:
                self._begin()
                if len(data) > self._head_left:
                    cut, heads = self._head_left, self._heads
                    self._feed(data[:cut])
                    if self.transport.is_closing() or self._linger_left >= 0:
                        return
                    if self._heads == heads:  # the head did not end within the limit
                        self._refuse(431, f"the request line and headers exceed {limits.max_header_bytes} bytes",
                                     "header_too_large")
                        return
                    self.data_received(data[cut:])
                    return
                self._head_left -= len(data)
            self._feed(data)

        def timeout_keep_alive_handler(self) -> None:
            if not self._reading:  # a request begun (pipelined behind an answer) has the read deadline
                super().timeout_keep_alive_handler()

        def _feed(self, data: bytes) -> None:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserUpgrade as exc:  # ignored: the connection stays HTTP/1.1
                self.parser = httptools.HttpRequestParser(self)  # llhttp stays paused after an upgrade
                rest = data[exc.args[0]:]
                if self._upgrade_body is not None:
                    self._read_upgrade_body(rest)
                elif rest:
                    self._feed(rest)
            except httptools.HttpParserError:
                if self._refusal is not None:
                    self._refuse(*self._refusal)
                else:
                    self._refuse(400, "invalid HTTP request", "bad_http")

        def _begin(self) -> None:
            if not self._reading:
                self._reading = True
                self._read_timer = self.loop.call_later(
                    limits.read_timeout_s, self._give_up, 408,
                    f"the request did not arrive within {limits.read_timeout_s:g} s", "read_timeout")

        def _stop_read_timer(self) -> None:
            if self._read_timer is not None:
                self._read_timer.cancel()
                self._read_timer = None

        # -- parser callbacks -------------------------------------------------------------------
        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._fields = 0
            self._begin()

        def on_header(self, name: bytes, value: bytes) -> None:
            self._fields += 1
            if self._fields > limits.max_headers:
                self._refusal = (431, f"more than {limits.max_headers} header fields", "too_many_headers")
                raise _Refused
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._head_left = None
            self._heads += 1
            limit = self.limit_concurrency
            busy = limit is not None and (len(self.connections) >= limit or len(self.tasks) >= limit)
            if busy:
                hooks.refused("connections", None)  # answered 503 (by uvicorn on its path)
            if route is not None and (self.cycle is None or self.cycle.response_complete) and not self.pipeline:
                path = httptools.parse_url(self.url).path.decode("ascii")
                target = route.match(self.parser.get_method().decode("ascii"),
                                     urllib.parse.unquote(path) if "%" in path else path)
                if target is not None:
                    self._start_direct(target, busy)
                    return
            super().on_headers_complete()
            if self.cycle is not None:
                self.cycle.transport = self._cycle_transport  # type: ignore[assignment]

        def on_body(self, body: bytes) -> None:
            direct = self.cycle
            if not isinstance(direct, _Direct):
                super().on_body(body)
                return
            if direct.response_complete:
                return  # answered already (refused): the rest is dropped
            direct.size += len(body)
            if direct.size > route.max_body:
                self._direct_refuse(direct, ProtocolError(413, f"request body exceeds the limit of {route.max_body} "
                                                               f"bytes", {"Connection": "close"}))
            elif not route.buffers.try_take(len(body)):
                self._direct_refuse(direct, route.buffers.refusal())
            else:
                direct.held += len(body)
                direct.chunks.append(body)

        def _read_upgrade_body(self, data: bytes) -> None:
            """The body of a request whose Upgrade header llhttp stopped at, up to its Content-Length."""
            assert self._upgrade_body is not None
            take = min(len(data), self._upgrade_body)
            if take:
                self.on_body(data[:take])
                self._upgrade_body -= take
            if self._upgrade_body == 0:
                self._upgrade_body = None
                self.on_message_complete()
                if len(data) > take:
                    self.data_received(data[take:])

        def on_message_complete(self) -> None:
            if self._upgrade_body is None and self.parser.should_upgrade():
                length = dict(self.headers).get(b"content-length", b"0")
                if length.isdigit() and int(length) > 0:  # the body follows the Upgrade llhttp stopped at
                    self._upgrade_body = int(length)
                    return
            self._pieces = self._piece_bytes = 0
            direct = self.cycle
            if isinstance(direct, _Direct):
                if not direct.response_complete and not direct.running:
                    direct.running = True
                    body = direct.chunks[0] if len(direct.chunks) == 1 else b"".join(direct.chunks)
                    direct.chunks = []
                    route.run(direct.headers, body, functools.partial(self._direct_reply, direct), direct.start)
            else:
                super().on_message_complete()
            self._reading = False
            self._stop_read_timer()
            self._head_left = limits.max_header_bytes

        # -- the direct route -------------------------------------------------------------------
        def _start_direct(self, target: Any, busy: bool) -> None:
            headers = dict(self.headers)
            keep_alive = self.parser.get_http_version() != "1.0" and self.parser.should_keep_alive()
            direct = _Direct(target, headers, keep_alive)
            direct.path = self.url.decode("latin-1")[:256]
            self.cycle = direct  # type: ignore[assignment]
            try:
                if busy:
                    raise ProtocolError(503, "server busy: too many connections; retry later",
                                        {"Retry-After": "1", "Connection": "close"})
                route.check_head(target, headers)
            except ProtocolError as exc:
                self._direct_refuse(direct, exc)
                return
            if self.expect_100_continue:
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

        def _direct_gone(self, direct: _Direct, status: int) -> None:
            """A direct request whose body will never arrive whole: counted, its buffers given back (one
            already queued for the batcher is counted when its answer finds the client gone)."""
            if direct.held:
                route.buffers.give(direct.held)
                direct.held = 0
            if not direct.running and not direct.response_complete:
                direct.response_complete = True
                route.count(status, direct.start)

        def _direct_refuse(self, direct: _Direct, exc: ProtocolError) -> None:
            route.refuse(exc, functools.partial(self._direct_reply, direct), direct.start)

        def _direct_reply(self, direct: _Direct, status: int, headers: list[tuple[bytes, bytes]],
                          body: bytes) -> bool:
            """Write the answer to a direct request; False when its client is gone."""
            if direct.held:
                route.buffers.give(direct.held)
                direct.held = 0
            if direct.response_complete:
                return False
            direct.response_started = direct.response_complete = True
            if direct.disconnected or self.transport.is_closing():
                return False
            if self.access_log:  # uvicorn's access line, for the requests its cycle never sees
                client = f"{self.client[0]}:{self.client[1]}" if self.client else "-"
                self.access_logger.info('%s - "%s %s HTTP/%s" %d', client, "POST", direct.path, "1.1", status)
            keep_alive = direct.keep_alive and (b"connection", b"close") not in headers
            head = [STATUS_LINE[status]]
            for name, value in (*self.server_state.default_headers, *headers,
                                (b"content-length", str(len(body)).encode())):
                head += [name, b": ", value, b"\r\n"]
            if not keep_alive and (b"connection", b"close") not in headers:
                head.append(b"connection: close\r\n")
            head += [b"\r\n", body]
            self.queue_write(b"".join(head))
            if keep_alive:
                self.on_response_complete()
            else:
                self.close_after_response()
            return True

        # -- bytes out --------------------------------------------------------------------------
        def queue_write(self, data: bytes) -> None:
            if not self._out:
                self.loop.call_soon(self.flush)
            self._out.append(data)

        def flush(self) -> None:
            if self._out:
                data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
                self._out.clear()
                if not self.transport.is_closing():
                    self.transport.write(data)

        def close_after_response(self) -> None:
            if self._reading:
                self._linger()
            else:
                self.flush()
                self.transport.close()

        def _refuse(self, status: int, message: str, reason: str) -> None:
            hooks.refused(reason, status)
            self.flush()
            if not self.transport.is_closing():
                self.transport.write(error_response(status, message))
            self._linger()

        def _linger(self) -> None:
            """Stop sending; read and drop what the client still sends, briefly; then close."""
            self.flush()
            if self.transport.is_closing() or self._linger_left >= 0:
                return
            if self._shutting_down:  # nothing waits for the client's rest any more
                self.transport.close()
                return
            self._linger_left = LINGER_BYTES
            self._stop_read_timer()
            self._unset_keepalive_if_required()
            if self.transport.can_write_eof():
                self.transport.write_eof()
            self.flow.resume_reading()
            self.loop.call_later(LINGER_S, self.transport.close)

        def _give_up(self, status: int, message: str, reason: str) -> None:
            """The read deadline or shutdown: answer ``status`` for a request still arriving."""
            self._read_timer = None
            if not self._reading or self.transport.is_closing() or self._linger_left >= 0:
                return
            cycle = self.cycle
            if self._head_left is not None or cycle is None:  # still in the head: nobody else has it
                self._refuse(status, message, reason)
                return
            hooks.refused(reason, None)
            if cycle.response_complete:  # answered already; the rest of its body never came
                self.flush()
                self.transport.close()
                return
            if isinstance(cycle, _Direct):
                self._direct_gone(cycle, status)
            # The app holds this request and waits for its body: it sees a disconnect, and the scope
            # says why (it counts the status); the answer goes out from here.
            cast(dict, cycle.scope)[GAVE_UP] = (status, reason)
            if not cycle.response_started:
                self.flush()
                self.transport.write(error_response(status, message))
            cycle.disconnected = True
            cycle.message_event.set()
            self._linger()

        def shutdown(self) -> None:
            self._shutting_down = True
            super().shutdown()
            if self._reading and not self.transport.is_closing():
                self.loop.call_later(max(0.0, limits.graceful_shutdown_s - 0.5), self._give_up, 503,
                                     "the server is shutting down", "shutdown")

    return LimitedHttpToolsProtocol
