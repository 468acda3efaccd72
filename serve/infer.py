"""POST /v2/models/{name}[/versions/{version}]/infer for the HTTP connection and the ASGI app alike."""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Callable
from typing import Any

from bninception.serve.protocol import (
    HEADER_LENGTH,
    InferRequest,
    ProtocolError,
    check_declared_length,
    decode_content,
    encode_infer_response,
    parse_infer_request,
)
from bninception.serve.state import MODEL_VERSION, ServerState

INFER_PATH = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")
CLIENT_CLOSED = 499  # nginx's "client closed request": counted, never sent
Headers = list[tuple[bytes, bytes]]
Reply = Callable[[int, Headers, bytes], bool]
Target = tuple[str, "str | None"]
_HEADER_LENGTH = HEADER_LENGTH.lower().encode()


def error_answer(exc: ProtocolError) -> tuple[int, Headers, bytes]:
    headers = [(b"content-type", b"application/json")]
    headers += [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()]
    return exc.status, headers, json.dumps({"error": exc.message}).encode()


class InferRoute:
    """The V2 infer route of one ServerState."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.max_body = state.max_body_bytes
        self.buffers = state.buffers

    @staticmethod
    def match(method: str, path: str) -> Target | None:
        """The (model, version) a request is for, when it is a POST to an infer path."""
        if method != "POST" or not path.endswith("/infer"):
            return None
        found = INFER_PATH.match(path)
        return (found[1], found[2]) if found else None

    def check_head(self, target: Target, headers: dict[bytes, bytes]) -> None:
        """Refusals before the body arrives: unknown model or version, a declared body over the limit."""
        self.state.check_model(*target)
        check_declared_length(headers, self.max_body)

    def parse(self, headers: dict[bytes, bytes], body: bytes) -> InferRequest:
        encoding = headers.get(b"content-encoding")
        if encoding is not None:
            body = decode_content(body, encoding.decode("latin-1"), self.max_body)
        length = headers.get(_HEADER_LENGTH)
        info = self.state.info
        return parse_infer_request(body, None if length is None else length.decode("latin-1"), info.input.name,
                                   info.item_shape, self.state.config.max_batch, self.state.shm.read)

    def run(self, headers: dict[bytes, bytes], body: bytes, reply: Reply, start: float | None = None) -> None:
        """Parse, queue for the batcher, and answer through ``reply`` (at once for a refusal, from the
        event loop when the batch is done otherwise)."""
        start = time.perf_counter() if start is None else start
        try:
            parsed = self.parse(headers, body)
            future = self.state.submit(parsed.data, parsed.timeout_s)
        except ProtocolError as exc:
            self.refuse(exc, reply, start)
            return
        future.add_done_callback(functools.partial(self._answer, parsed, reply, start))

    def refuse(self, exc: ProtocolError, reply: Reply, start: float) -> None:
        self.finish(reply, *error_answer(exc), start)

    def _answer(self, parsed: InferRequest, reply: Reply, start: float, future: Any) -> None:
        if future.cancelled():
            self.count(CLIENT_CLOSED, start)
            return
        try:
            logits = self.state.outcome(future)
            content, headers = encode_infer_response(self.state.name, MODEL_VERSION, parsed, logits,
                                                     self.state.shm.write)
        except ProtocolError as exc:
            self.refuse(exc, reply, start)
            return
        self.finish(reply, 200, [(k.lower().encode(), v.encode()) for k, v in headers.items()], content, start)

    def finish(self, reply: Reply, status: int, headers: Headers, body: bytes, start: float) -> None:
        self.count(status if reply(status, headers, body) else CLIENT_CLOSED, start)

    def count(self, status: int, start: float) -> None:
        metrics = self.state.metrics
        seconds = time.perf_counter() - start
        metrics.count("infer", status)
        metrics.latency.observe(seconds)
        self.state.stats.request(status == 200, seconds)
