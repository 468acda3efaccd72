"""One served model and what its HTTP and gRPC requests share: session, batcher, decoder, metrics, limits."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import fields
from importlib.metadata import version
from typing import Any

import numpy as np

from bninception.core import metadata
from bninception.core.cpus import available_cpus
from bninception.core.ort import user_name
from bninception.core.runner import OrtRunner
from bninception.serve.batcher import BatcherClosed, DynamicBatcher, QueueFull
from bninception.serve.budget import BufferBudget
from bninception.serve.config import MIB, ServeConfig
from bninception.serve.decode import ImageDecoder
from bninception.serve.metrics import ServerMetrics
from bninception.serve.model_info import ModelInfo, read_model_info
from bninception.serve.protocol import DATATYPE, EXTENSIONS, OUTPUTS, ProtocolError
from bninception.serve.shm import SharedMemory
from bninception.serve.stats import ModelStatistics
from bninception.serve.triton import model_config

log = logging.getLogger(__name__)

MODEL_VERSION = "1"
SERVER_NAME = "bninception"
CUDA_SHM_REFUSED = "CUDA shared memory is not supported by this server; use system shared memory"


class RequestTimeout(Exception):
    """A request's time ran out before the batcher answered it."""


def _expire(future: asyncio.Future[Any], timeout_s: float) -> None:
    if not future.done():
        future.set_exception(RequestTimeout(timeout_s))


class ServerState:
    """The model, its session and batcher, the metrics, and the limits of one server."""

    def __init__(self, model_path: str | os.PathLike[str], config: ServeConfig) -> None:
        self.config = config
        self.name = config.model_name
        self.threads = available_cpus(config.threads)  # the container's CPU quota when --threads is not given
        self.runner = OrtRunner(model_path, name=config.model_name, providers=config.providers,
                                optimization=config.optimization, threads=self.threads.count,
                                spinning=config.spinning)
        self.info: ModelInfo = read_model_info(self.runner, model_path)
        values = config.max_batch * int(np.prod(self.info.item_shape))
        # JSON numbers take up to ~25 bytes each; binary 4. Images for /v1/classify are bounded apart.
        self.max_body_bytes = config.max_body_bytes or max(1 << 20, values * 32 + (64 << 10))
        # a gRPC message carries tensors as 4-byte floats (5 unpacked): it needs no room for JSON
        self.max_message_bytes = min(self.max_body_bytes, values * 5) + (64 << 10)
        self.buffers = BufferBudget(config.buffer_memory_mb * MIB)
        self.decoder = (ImageDecoder(self.info.preprocess, config.decode_memory_mb * MIB, config.max_image_pixels)
                        if self.info.preprocess is not None else None)
        self.metrics = ServerMetrics()
        self.stats = ModelStatistics(self.name, MODEL_VERSION)
        self.shm = SharedMemory()
        self.batcher = DynamicBatcher(self.runner.run, max_batch=config.max_batch,
                                      max_delay_s=config.max_delay_ms / 1000, max_queue=config.max_queue,
                                      batching=config.batching, workers=config.workers, observer=self._observe)
        self._add_gauges()

    def _add_gauges(self) -> None:
        metrics, config = self.metrics, self.config
        metrics.gauge("bninception_queue_depth", "requests waiting for a batch", lambda: float(self.batcher.depth))
        metrics.gauge("bninception_ready", "1 while /v2/health/ready answers 200", lambda: float(self.health() is None))
        metrics.gauge("bninception_buffered_bytes", "request body bytes held now, all requests",
                      lambda: float(self.buffers.used))
        if self.decoder is not None:
            budget = self.decoder.budget
            metrics.gauge("bninception_decode_bytes", "decode budget taken now (estimated bytes)",
                          lambda: float(budget.used))
            metrics.gauge("bninception_decode_peak_bytes", "most of the decode budget ever taken at once",
                          lambda: float(budget.peak))
        metrics.constants("bninception_intra_op_threads", "ONNX Runtime intra-op threads (0: its default) and why",
                          {self.threads.source: self.threads.count}, label="source")
        limits = {f.name: getattr(config, f.name) for f in fields(config) if f.metadata.get("low") is not None}
        metrics.constants("bninception_limit", "the server's settings (README: Serving, Limits)",
                          {**limits, "max_body_bytes": self.max_body_bytes,
                                                        "max_message_bytes": self.max_message_bytes})

    # -- inference ----------------------------------------------------------------------------
    def _observe(self, rows: int, queued_s: list[float], phases_s: tuple[float, float, float]) -> None:
        self.metrics.batch_size.observe(rows)
        self.metrics.batch_requests.observe(len(queued_s))
        self.metrics.inference.observe(phases_s[1])
        self.stats.batch(rows, queued_s, phases_s)

    def health(self) -> str | None:
        """None while requests can be answered; else why not (``/v2/health/ready`` says 503)."""
        return self.batcher.health(stall_s=self.config.request_timeout_s)

    def submit(self, rows: np.ndarray, timeout_s: float | None = None) -> asyncio.Future[np.ndarray]:
        """Queue ``rows`` in the batcher (in an event loop): a future of their logits that fails with
        RequestTimeout when the request's time runs out. Read it with :meth:`outcome`."""
        timeout = min(timeout_s or self.config.request_timeout_s, self.config.request_timeout_s)
        try:
            future = self.batcher.submit_async(rows)
        except QueueFull as exc:
            self.metrics.refused("queue_full")
            raise ProtocolError(503, f"server busy: {exc}; retry later", {"Retry-After": "1"}) from None
        except BatcherClosed as exc:
            raise ProtocolError(503, str(exc), {"Retry-After": "1"}) from None
        timer = asyncio.get_running_loop().call_later(timeout, _expire, future, timeout)
        future.add_done_callback(lambda _: timer.cancel())
        return future

    def outcome(self, future: asyncio.Future[np.ndarray]) -> np.ndarray:
        """The logits of a done ``submit`` future, or the ProtocolError (504, 500) its failure means."""
        try:
            return future.result()
        except RequestTimeout as exc:
            self.metrics.refused("timeout")
            raise ProtocolError(504, f"request timed out after {exc.args[0]:g} s") from None
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the runtime failed on a valid request: a server error
            log.error("inference failed: %s", exc, exc_info=exc)
            raise ProtocolError(500, f"inference failed: {exc}") from None

    async def predict(self, rows: np.ndarray, timeout_s: float | None = None) -> np.ndarray:
        """Logits for ``rows`` through the dynamic batcher, with queue and time limits (in an event loop)."""
        future = self.submit(rows, timeout_s)
        with contextlib.suppress(Exception):  # outcome() turns the failure into the answer
            await future  # cancelled with this task when the client goes away: the batcher skips it
        return self.outcome(future)

    # -- metadata -----------------------------------------------------------------------------
    def check_model(self, name: str | None, version: str | None = None) -> None:
        """Refuse (404) a model or version this server does not serve; ``name`` None: the server itself."""
        if name is not None and name != self.name:
            raise ProtocolError(404, f"unknown model {name!r}; this server serves {self.name!r}")
        if version and version != MODEL_VERSION:
            raise ProtocolError(404, f"model {name!r} has no version {version!r}; "
                                     f"versions: [{MODEL_VERSION!r}]")

    def server_metadata(self) -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": version("bninception"), "extensions": EXTENSIONS}

    def metadata(self) -> dict[str, Any]:
        info = self.info
        classes = info.num_classes
        return {
            "name": self.name,
            "versions": [MODEL_VERSION],
            "platform": "onnxruntime_onnx",
            "inputs": [{"name": info.input.name, "datatype": DATATYPE, "shape": [-1, *info.item_shape]}],
            "outputs": [{"name": name, "datatype": DATATYPE, "shape": [-1, classes]} for name in OUTPUTS],
            "parameters": {"labels": info.labels, "label_names": info.label_names,
                           "max_batch_size": self.config.max_batch,
                           "preprocess": info.preprocess.to_dict() if info.preprocess is not None else None,
                           "source_sha256": info.metadata.get(metadata.SOURCE_SHA256),
                           "providers": [user_name(p) for p in self.runner.providers]},
        }

    def triton_config(self) -> dict[str, Any]:
        config = model_config(self.info, self.name, self.config.max_batch, round(self.config.max_delay_ms * 1000),
                              platform="onnxruntime_onnx", backend="onnxruntime")
        config["output"].append({**config["output"][0], "name": "probabilities"})
        return config

    def repository_index(self) -> list[dict[str, str]]:
        """The model repository of a server of one model (Triton's model_repository extension)."""
        problem = self.health()
        return [{"name": self.name, "version": MODEL_VERSION, "state": "READY" if problem is None else "UNAVAILABLE",
                 "reason": problem or ""}]

    def load(self, name: str, unload: bool = False) -> None:
        """Repository load / unload: the served model is always loaded; this server cannot unload it."""
        self.check_model(name)
        if unload:
            raise ProtocolError(400, f"model {name!r} cannot be unloaded: this server serves one model, "
                                     f"loaded at start (stop the server instead)")

    def close(self) -> None:
        self.shm.close()
        self.batcher.close()
        if self.decoder is not None:
            self.decoder.close()
