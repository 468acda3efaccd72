"""The HTTP app: KServe V2 REST API, Triton's extensions, ``/v1/classify`` and ``/metrics``, as a route
table over the handler methods of :class:`Handlers`."""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from bninception.core import metadata
from bninception.serve.config import ServeConfig
from bninception.serve.dispatch import Answer, Request, json_answer
from bninception.serve.http_app import ServerApp
from bninception.serve.infer import InferHandler
from bninception.serve.protocol import ProtocolError, json_object, softmax
from bninception.serve.routes import Route, Router
from bninception.serve.state import CUDA_SHM_REFUSED, MODEL_VERSION, ServerState

SMALL_JSON_BYTES = 64 << 10  # the shared-memory registration body


async def image_bytes(request: Request, body: bytes) -> bytes:
    """The uploaded image: the first file of a multipart form, or the raw body."""
    if not request.headers.get(b"content-type", b"").startswith(b"multipart/form-data"):
        return body
    from starlette.datastructures import UploadFile
    from starlette.requests import Request as FormRequest

    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {"type": "http", "method": "POST", "headers": list(request.headers.items())}
    try:
        form = await FormRequest(scope, replay).form(max_files=1, max_fields=16)
    except Exception as exc:  # python-multipart raises several types for a broken form
        raise ProtocolError(400, f"malformed multipart form: {exc}") from None
    for value in form.values():
        if isinstance(value, UploadFile):
            return await value.read()
    raise ProtocolError(400, "the multipart form has no file part; send the image as a file field")


class Handlers:
    """One method per route of :func:`routes`; each takes the Request and returns (status, headers, body)."""

    def __init__(self, state: ServerState) -> None:
        self.state = state

    def _model(self, request: Request) -> None:
        self.state.check_model(request.params.get("name"), request.params.get("version"))

    async def server_metadata(self, _: Request) -> Answer:
        return json_answer(self.state.server_metadata())

    async def live(self, _: Request) -> Answer:
        return json_answer({"live": True})

    async def ready(self, request: Request) -> Answer:
        self._model(request)
        problem = self.state.health()
        name = request.params.get("name")
        answer: dict[str, Any] = {"ready": problem is None} if name is None else {"name": name,
                                                                                "ready": problem is None}
        return json_answer(answer) if problem is None else json_answer({**answer, "error": problem}, 503)

    async def models(self, _: Request) -> Answer:
        return json_answer({"models": [self.state.name]})

    async def statistics(self, request: Request) -> Answer:
        self._model(request)
        return json_answer({"model_stats": [self.state.stats.to_dict()]})

    async def repository_index(self, _: Request) -> Answer:
        return json_answer(self.state.repository_index())

    async def repository_action(self, request: Request) -> Answer:
        action = request.params["action"]
        if action not in ("load", "unload"):
            raise ProtocolError(404, f"unknown repository action {action!r}")
        self.state.load(request.params["name"], unload=action == "unload")
        return json_answer({})

    async def shm_status(self, request: Request) -> Answer:
        return json_answer(self.state.shm.status(request.params.get("region")))

    async def shm_register(self, request: Request) -> Answer:
        obj = json_object(await request.body(SMALL_JSON_BYTES) or b"{}", "the request body")
        key, offset, size = obj.get("key"), obj.get("offset", 0), obj.get("byte_size")
        if not isinstance(key, str) or not isinstance(offset, int) or not isinstance(size, int):
            raise ProtocolError(400, "register needs {\"key\": str, \"offset\": int, \"byte_size\": int}")
        self.state.shm.register(request.params["region"], key, offset, size)
        return json_answer({})

    async def shm_unregister(self, request: Request) -> Answer:
        self.state.shm.unregister(request.params.get("region"))
        return json_answer({})

    async def cuda_shm(self, request: Request) -> Answer:
        """No CUDA shared memory here: status lists none, unregister succeeds, register is refused."""
        action = request.params["action"]
        if action.endswith("/register"):
            raise ProtocolError(400, CUDA_SHM_REFUSED)
        return json_answer([] if action.endswith("status") else {})

    async def model_metadata(self, request: Request) -> Answer:
        self._model(request)
        return json_answer(self.state.metadata())

    async def model_config(self, request: Request) -> Answer:
        self._model(request)
        return json_answer(self.state.triton_config())

    async def classify(self, request: Request) -> Answer:
        state = self.state
        if state.decoder is None:
            raise ProtocolError(501, f"model {state.name!r} has no recorded preprocessing (ONNX metadata "
                                     f"{metadata.PREPROCESS}); send tensors to /v2/models/{state.name}/infer")
        top = self._top(request.query("top"))
        data = await image_bytes(request, await request.body(state.config.max_image_bytes))
        if not data:
            raise ProtocolError(400, "no image: send a JPEG or PNG as the body or as a multipart file")
        rows = await state.decoder.rows(data, state.config.request_timeout_s)
        del data
        probabilities = softmax(await state.predict(rows))[0]
        order = np.argsort(-probabilities, kind="stable")[:top]
        labels, names = state.info.labels, state.info.label_names
        return json_answer({"model_name": state.name, "model_version": MODEL_VERSION,
                            "top": [{"label": labels[i], "name": names[i], "index": int(i),
                                     "probability": float(p) if math.isfinite(p := probabilities[i]) else None}
                                    for i in order]})

    def _top(self, given: str | None) -> int:
        classes = self.state.info.num_classes
        try:
            top = 5 if given is None else int(given)
        except ValueError:
            raise ProtocolError(400, f"top must be an integer, got {given[:32]!r}") from None
        if not 1 <= top <= classes:
            raise ProtocolError(400, f"top must be in 1..{classes}, got {top}")
        return top

    async def metrics(self, _: Request) -> Answer:
        from prometheus_client import CONTENT_TYPE_LATEST

        return 200, [(b"content-type", CONTENT_TYPE_LATEST.encode())], self.state.metrics.render()


def routes(handlers: Handlers, infer: InferHandler) -> list[Route]:
    """The route table, most frequent first (a path matches the first template that fits)."""
    h, get, post = handlers, ("GET",), ("POST",)
    model, version = "/v2/models/{name}", "/v2/models/{name}/versions/{version}"
    table = [
        Route(post, f"{model}/infer", "infer", infer), Route(post, f"{version}/infer", "infer", infer),
        Route(post, "/v1/classify", "classify", h.classify),
        Route(get, "/v2/health/live", "health", h.live), Route(get, "/v2/health/ready", "health", h.ready),
        Route(get, f"{model}/ready", "health", h.ready), Route(get, f"{version}/ready", "health", h.ready),
        Route(get, "/metrics", "metrics", h.metrics),
        Route(get, "/v2", "metadata", h.server_metadata),
        Route(get, "/v2/models", "metadata", h.models),
        Route(get, "/v2/models/stats", "metadata", h.statistics),
        Route(get, f"{model}/stats", "metadata", h.statistics),
        Route(get, f"{version}/stats", "metadata", h.statistics),
        Route(post, "/v2/repository/index", "metadata", h.repository_index),
        Route(post, "/v2/repository/models/{name}/{action}", "metadata", h.repository_action),
        Route(get, "/v2/systemsharedmemory/status", "metadata", h.shm_status),
        Route(get, "/v2/systemsharedmemory/region/{region}/status", "metadata", h.shm_status),
        Route(post, "/v2/systemsharedmemory/region/{region}/register", "metadata", h.shm_register),
        Route(post, "/v2/systemsharedmemory/unregister", "metadata", h.shm_unregister),
        Route(post, "/v2/systemsharedmemory/region/{region}/unregister", "metadata", h.shm_unregister),
        Route(("GET", "POST"), "/v2/cudasharedmemory/{action:path}", "metadata", h.cuda_shm),
        Route(get, model, "metadata", h.model_metadata), Route(get, version, "metadata", h.model_metadata),
        Route(get, f"{model}/config", "metadata", h.model_config),
        Route(get, f"{version}/config", "metadata", h.model_config),
    ]
    return table


def create_app(model_path: str | os.PathLike[str], config: ServeConfig | None = None, **overrides: Any) -> ServerApp:
    """An ASGI app serving ``model_path`` with ``config`` (``overrides`` replace single settings;
    ``app.state.server`` holds the ServerState)."""
    state = ServerState(model_path, (config or ServeConfig()).with_overrides(**overrides))
    return ServerApp(state, Router(routes(Handlers(state), InferHandler(state))))
