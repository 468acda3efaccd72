"""The HTTP app: KServe V2 REST API, Triton's extensions, ``/v1/classify`` and ``/metrics`` (FastAPI).

Client mistakes are answered with a 4xx status and ``{"error": "..."}``, never a 500.
"""

import contextlib
import json
import math
import os
from collections.abc import AsyncIterator
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

import numpy as np

from bninception.core import metadata
from bninception.serve.asgi import ClientGone, Message, ServerApp, gone_status, read_body
from bninception.serve.config import ServeConfig
from bninception.serve.protocol import ProtocolError, json_object, softmax
from bninception.serve.state import CUDA_SHM_REFUSED, MODEL_VERSION, ServerState

if TYPE_CHECKING:
    from fastapi import Request, Response


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> "Response":
    from fastapi import Response

    return Response(json.dumps(obj, separators=(",", ":"), allow_nan=False), status_code=status,
                    headers=headers, media_type="application/json")


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
               ) -> ServerApp:
    """An ASGI app serving ``model_path`` with ``config`` (``overrides`` replace single settings;
    ``app.state.server`` holds the ServerState)."""
    from fastapi import FastAPI, Request, Response
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    state = ServerState(model_path, (config or ServeConfig()).with_overrides(**overrides))

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        state.close()

    app = FastAPI(title="bninception", version=version("bninception"), lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None)

    @app.exception_handler(ProtocolError)
    async def protocol_error(_: Request, exc: ProtocolError) -> Response:
        return _json({"error": exc.message}, exc.status, exc.headers)

    @app.exception_handler(ClientGone)
    async def client_gone(request: Request, _: ClientGone) -> Response:
        return Response(status_code=gone_status(request.scope))  # never sent: counted by its status

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> Response:
        return _json({"error": str(exc.detail)}, exc.status_code, dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> Response:
        return _json({"error": f"invalid request: {exc.errors()}"}, 400)

    # -- server -------------------------------------------------------------------------------
    @app.get("/v2")
    async def server_metadata() -> Response:
        return _json(state.server_metadata())

    @app.get("/v2/health/live")
    async def live() -> Response:
        return _json({"live": True})

    @app.get("/v2/health/ready")
    @app.get("/v2/models/{name}/ready")
    @app.get("/v2/models/{name}/versions/{version}/ready")
    async def ready(name: str | None = None, version: str | None = None) -> Response:
        state.check_model(name, version)
        problem = state.health()
        answer = {"ready": problem is None} if name is None else {"name": name, "ready": problem is None}
        return _json(answer) if problem is None else _json({**answer, "error": problem}, 503)

    async def small_json(request: Request) -> dict[str, Any]:
        held = [0]
        try:
            body = await read_body(request.receive, dict(request.scope["headers"]), 64 << 10, state.buffers, held)
        finally:
            state.buffers.give(held[0])
        return json_object(body or b"{}", "the request body")

    # -- Triton extensions: statistics, model_repository, system_shared_memory ----------------
    @app.get("/v2/models")
    async def models() -> Response:
        return _json({"models": [state.name]})

    @app.get("/v2/models/stats")
    @app.get("/v2/models/{name}/stats")
    @app.get("/v2/models/{name}/versions/{version}/stats")
    async def statistics(name: str | None = None, version: str | None = None) -> Response:
        state.check_model(name, version)
        return _json({"model_stats": [state.stats.to_dict()]})

    @app.post("/v2/repository/index")
    async def repository_index() -> Response:
        return _json(state.repository_index())

    @app.post("/v2/repository/models/{name}/{action}")
    async def repository_load(name: str, action: str) -> Response:
        if action not in ("load", "unload"):
            raise ProtocolError(404, f"unknown repository action {action!r}")
        state.load(name, unload=action == "unload")
        return _json({})

    @app.get("/v2/systemsharedmemory/status")
    @app.get("/v2/systemsharedmemory/region/{region}/status")
    async def shm_status(region: str | None = None) -> Response:
        return _json(state.shm.status(region))

    @app.post("/v2/systemsharedmemory/region/{region}/register")
    async def shm_register(region: str, request: Request) -> Response:
        obj = await small_json(request)
        key, offset, size = obj.get("key"), obj.get("offset", 0), obj.get("byte_size")
        if not isinstance(key, str) or not isinstance(offset, int) or not isinstance(size, int):
            raise ProtocolError(400, "register needs {\"key\": str, \"offset\": int, \"byte_size\": int}")
        state.shm.register(region, key, offset, size)
        return _json({})

    @app.post("/v2/systemsharedmemory/unregister")
    @app.post("/v2/systemsharedmemory/region/{region}/unregister")
    async def shm_unregister(region: str | None = None) -> Response:
        state.shm.unregister(region)
        return _json({})

    @app.api_route("/v2/cudasharedmemory/{action:path}", methods=["GET", "POST"])
    async def cuda_shm(action: str) -> Response:
        """No CUDA shared memory here: status lists none, unregister succeeds, register is refused."""
        if action.endswith("/register"):
            raise ProtocolError(400, CUDA_SHM_REFUSED)
        return _json([] if action.endswith("status") else {})

    # -- model --------------------------------------------------------------------------------
    @app.get("/v2/models/{name}")
    @app.get("/v2/models/{name}/versions/{version}")
    async def model_metadata(name: str, version: str | None = None) -> Response:
        state.check_model(name, version)
        return _json(state.metadata())

    @app.get("/v2/models/{name}/config")
    @app.get("/v2/models/{name}/versions/{version}/config")
    async def model_configuration(name: str, version: str | None = None) -> Response:
        state.check_model(name, version)
        return _json(state.triton_config())

    # -- for people ---------------------------------------------------------------------------
    @app.post("/v1/classify")
    async def classify(request: Request, top: int = 5) -> Response:
        if state.decoder is None:
            raise ProtocolError(501, f"model {state.name!r} has no recorded preprocessing (ONNX metadata "
                                     f"{metadata.PREPROCESS}); send tensors to /v2/models/{state.name}/infer")
        if not 1 <= top <= state.info.num_classes:
            raise ProtocolError(400, f"top must be in 1..{state.info.num_classes}, got {top}")
        held = [0]
        try:
            body = await read_body(request.receive, dict(request.scope["headers"]), state.config.max_image_bytes,
                                   state.buffers, held)
            data = await _image_bytes(request, body)
            if not data:
                raise ProtocolError(400, "no image: send a JPEG or PNG as the body or as a multipart file")
            del body
            rows = await state.decoder.rows(data, state.config.request_timeout_s)
        finally:
            state.buffers.give(held[0])
        probabilities = softmax(await state.predict(rows))[0]
        order = np.argsort(-probabilities, kind="stable")[:top]
        return _json({"model_name": state.name, "model_version": MODEL_VERSION,
                      "top": [{"label": state.info.labels[i], "name": state.info.label_names[i], "index": int(i),
                               "probability": float(p) if math.isfinite(p := probabilities[i]) else None}
                              for i in order]})

    @app.get("/metrics")
    async def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return ServerApp(state, app)
