"""POST /v2/models/{name}[/versions/{version}]/infer: V2 tensors in, through the batcher, V2 tensors out."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bninception.serve.protocol import (
    HEADER_LENGTH,
    InferRequest,
    decode_content,
    encode_infer_response,
    parse_infer_request,
)
from bninception.serve.state import MODEL_VERSION, ServerState

if TYPE_CHECKING:
    from bninception.serve.dispatch import Answer, Request

_HEADER_LENGTH = HEADER_LENGTH.lower().encode()


class InferHandler:
    """The V2 infer handler of one ServerState (JSON and binary tensors, shared memory, compression)."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.max_body = state.max_body_bytes

    async def __call__(self, request: Request) -> Answer:
        self.state.check_model(request.params["name"], request.params.get("version"))
        body = await request.body(self.max_body)
        parsed = self.parse(request.headers, body)
        del body
        logits = await self.state.predict(parsed.data, parsed.timeout_s)
        content, headers = encode_infer_response(self.state.name, MODEL_VERSION, parsed, logits, self.state.shm.write)
        return 200, [(k.lower().encode(), v.encode()) for k, v in headers.items()], content

    def parse(self, headers: dict[bytes, bytes], body: bytes) -> InferRequest:
        encoding = headers.get(b"content-encoding")
        if encoding is not None:
            body = decode_content(body, encoding.decode("latin-1"), self.max_body)
        length = headers.get(_HEADER_LENGTH)
        info = self.state.info
        return parse_infer_request(body, None if length is None else length.decode("latin-1"), info.input.name,
                                   info.item_shape, self.state.config.max_batch, self.state.shm.read)
