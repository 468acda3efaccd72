"""The HTTP app: KServe V2 / Open Inference Protocol REST API, ``/v1/classify`` and ``/metrics``.

``create_app`` loads the model into an ONNX Runtime session, starts the dynamic batcher and
returns a FastAPI app (run it under uvicorn, or in-process in tests). Client mistakes are
answered with a 4xx status and ``{"error": "..."}``; they never reach a 500.
"""

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

import numpy as np

from bninception.core import metadata
from bninception.core.errors import BninceptionError
from bninception.core.ort import user_name
from bninception.core.runner import OrtRunner
from bninception.serve.batcher import BatcherClosed, DynamicBatcher, QueueFull
from bninception.serve.config import ServeConfig
from bninception.serve.metrics import ServerMetrics
from bninception.serve.model_info import ModelInfo, read_model_info
from bninception.serve.protocol import (
    DATATYPE,
    EXTENSIONS,
    HEADER_LENGTH,
    OUTPUTS,
    ProtocolError,
    decode_content,
    encode_infer_response,
    parse_infer_request,
    softmax,
)
from bninception.serve.triton import model_config

if TYPE_CHECKING:
    from fastapi import FastAPI, Request, Response

log = logging.getLogger(__name__)

MODEL_VERSION = "1"
MAX_IMAGE_BYTES = 32 * 1024 * 1024
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]


class ServerState:
    """The model, its session and batcher, the metrics, and the limits of one server."""

    def __init__(self, model_path: "str | os.PathLike[str]", config: ServeConfig) -> None:
        self.config = config
        self.name = config.model_name
        self.runner = OrtRunner(model_path, name=config.model_name, providers=config.providers,
                                optimization=config.optimization, threads=config.threads, spinning=config.spinning)
        self.info: ModelInfo = read_model_info(self.runner, model_path)
        self.max_batch = config.max_batch
        self.max_delay_ms = config.max_delay_ms
        self.request_timeout_s = config.request_timeout_s
        values = config.max_batch * int(np.prod(self.info.item_shape))
        # JSON numbers take up to ~25 bytes each; binary 4. Images for /v1/classify are bounded apart.
        self.max_body_bytes = config.max_body_bytes or max(1 << 20, values * 32 + (64 << 10))
        self.metrics = ServerMetrics(queue_depth=self._queue_depth)
        self.batcher = DynamicBatcher(self.runner.run, max_batch=config.max_batch,
                                      max_delay_s=config.max_delay_ms / 1000, max_queue=config.max_queue,
                                      batching=config.batching, workers=config.workers, observer=self._observe)

    # -- inference ----------------------------------------------------------------------------
    def _queue_depth(self) -> float:
        return float(self.batcher.depth)

    def _observe(self, rows: int, requests: int, seconds: float) -> None:
        self.metrics.batch_size.observe(rows)
        self.metrics.batch_requests.observe(requests)
        self.metrics.inference.observe(seconds)

    async def predict(self, rows: np.ndarray, timeout_s: float | None = None) -> np.ndarray:
        """Logits for ``rows`` through the dynamic batcher, with queue and time limits."""
        timeout = min(timeout_s or self.request_timeout_s, self.request_timeout_s)
        try:
            future = self.batcher.submit(rows)
        except QueueFull as exc:
            self.metrics.rejected.inc(reason="queue_full")
            raise ProtocolError(503, f"server busy: {exc}; retry later", {"Retry-After": "1"}) from None
        except BatcherClosed as exc:
            raise ProtocolError(503, str(exc), {"Retry-After": "1"}) from None
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except asyncio.TimeoutError:
            future.cancel()
            self.metrics.rejected.inc(reason="timeout")
            raise ProtocolError(504, f"request timed out after {timeout:g} s") from None
        except Exception as exc:  # the runtime failed on a valid request: a server error
            log.exception("inference failed")
            raise ProtocolError(500, f"inference failed: {exc}") from None

    # -- metadata -----------------------------------------------------------------------------
    def check_model(self, name: str, version: str | None = None) -> None:
        if name != self.name:
            raise ProtocolError(404, f"unknown model {name!r}; this server serves {self.name!r}")
        if version is not None and version != MODEL_VERSION:
            raise ProtocolError(404, f"model {name!r} has no version {version!r}; "
                                     f"versions: [{MODEL_VERSION!r}]")

    def metadata(self) -> dict[str, Any]:
        info = self.info
        classes = info.num_classes
        return {
            "name": self.name,
            "versions": [MODEL_VERSION],
            "platform": "onnxruntime_onnx",
            "inputs": [{"name": info.input.name, "datatype": DATATYPE, "shape": [-1, *info.item_shape]}],
            "outputs": [{"name": name, "datatype": DATATYPE, "shape": [-1, classes]} for name in OUTPUTS],
            "parameters": {"labels": info.labels, "max_batch_size": self.max_batch,
                           "preprocess": info.preprocess.to_dict() if info.preprocess is not None else None,
                           "source_sha256": info.metadata.get(metadata.SOURCE_SHA256),
                           "providers": [user_name(p) for p in self.runner.providers]},
        }

    def triton_config(self) -> dict[str, Any]:
        config = model_config(self.info, self.name, self.max_batch, round(self.max_delay_ms * 1000),
                              platform="onnxruntime_onnx", backend="onnxruntime")
        config["output"].append({**config["output"][0], "name": "probabilities"})
        return config

    def close(self) -> None:
        self.batcher.close()


class MetricsMiddleware:
    """Pure ASGI middleware: requests by endpoint and status, latency of inference endpoints."""

    def __init__(self, app: Callable[..., Awaitable[None]], state: ServerState) -> None:
        self.app = app
        self.state = state

    @staticmethod
    def endpoint(path: str) -> str:
        if path.endswith("/infer"):
            return "infer"
        if path == "/v1/classify":
            return "classify"
        if path.startswith("/v2/health"):
            return "health"
        if path.startswith("/v2"):
            return "metadata"
        return "metrics" if path == "/metrics" else "other"

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            endpoint = self.endpoint(scope.get("path", ""))
            self.state.metrics.requests.inc(endpoint=endpoint, code=str(status))
            if endpoint in ("infer", "classify"):
                self.state.metrics.latency.observe(time.perf_counter() - start)


async def read_body(request: "Request", limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ProtocolError(400, f"Content-Length must be an integer, got {declared!r}") from None
        if size > limit:
            raise ProtocolError(413, f"request body of {size} bytes exceeds the limit of {limit} bytes")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise ProtocolError(413, f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> "Response":
    from fastapi import Response

    return Response(json.dumps(obj, separators=(",", ":")), status_code=status, headers=headers,
                    media_type="application/json")


async def _image_bytes(request: "Request", body: bytes) -> bytes:
    """The uploaded image: the first file of a multipart form, or the raw body."""
    from starlette.datastructures import UploadFile
    from starlette.requests import Request as StarletteRequest

    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return body

    async def replay() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await StarletteRequest(request.scope, replay).form(max_files=1, max_fields=16)
    except Exception as exc:  # python-multipart raises several types for a broken form
        raise ProtocolError(400, f"malformed multipart form: {exc}") from None
    for value in form.values():
        if isinstance(value, UploadFile):
            return await value.read()
    raise ProtocolError(400, "the multipart form has no file part; send the image as a file field")


def create_app(model_path: "str | os.PathLike[str]", config: ServeConfig | None = None, **overrides: Any
               ) -> "FastAPI":
    """A FastAPI app serving ``model_path`` with ``config`` (``overrides`` replace single settings;
    ``app.state.server`` holds the ServerState)."""
    from fastapi import FastAPI, Request, Response
    from fastapi.exceptions import RequestValidationError
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException

    state = ServerState(model_path, (config or ServeConfig()).with_overrides(**overrides))

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        state.close()

    app = FastAPI(title="bninception", version=version("bninception"), lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None)
    app.state.server = state

    @app.exception_handler(ProtocolError)
    async def protocol_error(_: Request, exc: ProtocolError) -> Response:
        return _json({"error": exc.message}, exc.status, exc.headers)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> Response:
        return _json({"error": str(exc.detail)}, exc.status_code, dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> Response:
        return _json({"error": f"invalid request: {exc.errors()}"}, 400)

    # -- server -------------------------------------------------------------------------------
    @app.get("/v2")
    async def server_metadata() -> Response:
        return _json({"name": "bninception", "version": version("bninception"), "extensions": EXTENSIONS})

    @app.get("/v2/health/live")
    async def live() -> Response:
        return _json({"live": True})

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        return _json({"ready": True})

    # -- model --------------------------------------------------------------------------------
    @app.get("/v2/models/{name}")
    @app.get("/v2/models/{name}/versions/{version}")
    async def model_metadata(name: str, version: str | None = None) -> Response:
        state.check_model(name, version)
        return _json(state.metadata())

    @app.get("/v2/models/{name}/ready")
    @app.get("/v2/models/{name}/versions/{version}/ready")
    async def model_ready(name: str, version: str | None = None) -> Response:
        state.check_model(name, version)
        return _json({"name": name, "ready": True})

    @app.get("/v2/models/{name}/config")
    @app.get("/v2/models/{name}/versions/{version}/config")
    async def model_configuration(name: str, version: str | None = None) -> Response:
        state.check_model(name, version)
        return _json(state.triton_config())

    @app.post("/v2/models/{name}/infer")
    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def infer(name: str, request: Request, version: str | None = None) -> Response:
        state.check_model(name, version)
        body = await read_body(request, state.max_body_bytes)
        body = decode_content(body, request.headers.get("content-encoding"), state.max_body_bytes)
        parsed = parse_infer_request(body, request.headers.get(HEADER_LENGTH), state.info.input.name,
                                     state.info.item_shape, state.max_batch)
        logits = await state.predict(parsed.data, parsed.timeout_s)
        content, headers = encode_infer_response(state.name, MODEL_VERSION, parsed, logits)
        return Response(content, headers=headers)

    # -- for people ---------------------------------------------------------------------------
    @app.post("/v1/classify")
    async def classify(request: Request, top: int = 5) -> Response:
        pre = state.info.preprocess
        if pre is None:
            raise ProtocolError(501, f"model {state.name!r} has no recorded preprocessing (ONNX metadata "
                                     f"{metadata.PREPROCESS}); send tensors to /v2/models/{state.name}/infer")
        if not 1 <= top <= state.info.num_classes:
            raise ProtocolError(400, f"top must be in 1..{state.info.num_classes}, got {top}")
        body = await read_body(request, MAX_IMAGE_BYTES)
        data = await _image_bytes(request, body)
        if not data:
            raise ProtocolError(400, "no image: send a JPEG or PNG as the body or as a multipart file")

        def prepare() -> np.ndarray:
            from bninception.core.preprocess import decode_image

            return pre(decode_image(data, source="uploaded image"))[None]

        try:
            rows = await run_in_threadpool(prepare)
        except BninceptionError as exc:
            raise ProtocolError(400, str(exc)) from None
        probabilities = softmax(await state.predict(rows))[0]
        order = np.argsort(-probabilities, kind="stable")[:top]
        return _json({"model_name": state.name, "model_version": MODEL_VERSION,
                      "top": [{"label": state.info.labels[i], "index": int(i),
                               "probability": float(probabilities[i])} for i in order]})

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type="text/plain; version=0.0.4")

    app.add_middleware(MetricsMiddleware, state=state)
    return app
