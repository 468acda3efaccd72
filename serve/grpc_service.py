"""KServe V2 / Triton gRPC (``inference.GRPCInferenceService``) on its own port, from the HTTP server's state.

Refusals get the gRPC status of the HTTP one (:data:`STATUS`); grpcio's settings bound the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from typing import Any

import numpy as np
from google.protobuf import json_format

from bninception.core.errors import BninceptionError
from bninception.serve.proto import inference_pb2 as pb
from bninception.serve.protocol import (
    DATATYPE,
    MAX_TIMEOUT_US,
    OUTPUTS,
    ProtocolError,
    RequestedOutput,
    bad,
    check_bytes,
    check_input,
    check_outputs,
    one_source,
    output_tensors,
    shm_span,
)
from bninception.serve.state import CUDA_SHM_REFUSED, MODEL_VERSION, ServerState

log = logging.getLogger(__name__)

SERVICE = "inference.GRPCInferenceService"
METHODS = ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer", "ModelConfig",
           "ModelStatistics", "RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload",
           "SystemSharedMemoryStatus", "SystemSharedMemoryRegister", "SystemSharedMemoryUnregister",
           "CudaSharedMemoryStatus", "CudaSharedMemoryRegister", "CudaSharedMemoryUnregister")
STATUS = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 408: "DEADLINE_EXCEEDED", 413: "RESOURCE_EXHAUSTED",
          429: "RESOURCE_EXHAUSTED", 501: "UNIMPLEMENTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


def _params(parameters: Any) -> dict[str, Any]:
    """A protobuf map of InferParameter as plain values."""
    return {key: getattr(value, value.WhichOneof("parameter_choice") or "bool_param")
            for key, value in parameters.items()}


def infer_rows(request: Any, input_name: str, item_shape: tuple[int, ...], max_batch: int,
               read_shm: Any = None) -> np.ndarray:
    """The float32 NCHW batch of a ModelInferRequest, checked like the HTTP route checks its body;
    non-finite values pass through, as in Triton."""
    if len(request.inputs) != 1:
        raise bad(f"the model takes one input {input_name!r}, got {[i.name for i in request.inputs]}")
    tensor = request.inputs[0]
    name = tensor.name
    shape = check_input(name, tensor.datatype, list(tensor.shape), input_name, item_shape, max_batch)
    shm = shm_span(_params(tensor.parameters), f"input {name!r}")
    raws = request.raw_input_contents
    source = one_source(name, {"raw_input_contents": len(raws) > 0, "contents": tensor.HasField("contents"),
                               "shared memory": shm is not None})
    if source == "contents":
        values = tensor.contents.fp32_contents
        if len(values) != math.prod(shape):
            raise bad(f"input {name!r}: {len(values)} fp32_contents but shape {list(shape)} needs {math.prod(shape)}")
        return np.asarray(values, dtype=np.float32).reshape(shape)
    if len(raws) > 1:
        raise bad(f"{len(raws)} raw_input_contents for one input")
    if shm is not None:
        check_bytes(name, "shared_memory_byte_size", shm[2], shape)
        raw = read_shm(*shm)
    else:
        raw = raws[0]
        check_bytes(name, "raw_input_contents of", len(raw), shape)
    return np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32)


def _timeout_s(request: Any, context: Any) -> float | None:
    timeout: float | None = None
    if "timeout" in request.parameters:
        micros = request.parameters["timeout"].int64_param
        if not 0 < micros <= MAX_TIMEOUT_US:
            raise bad("parameter timeout must be a positive int64_param (microseconds)")
        timeout = micros / 1e6
    remaining = context.time_remaining()
    if remaining is not None:  # the client's own gRPC deadline
        timeout = remaining if timeout is None else min(timeout, remaining)
    return timeout


def _requested(request: Any) -> tuple[RequestedOutput, ...]:
    wanted = tuple(RequestedOutput(o.name, True, shm_span(_params(o.parameters), f"output {o.name!r}"))
                   for o in request.outputs) or tuple(RequestedOutput(name, True) for name in OUTPUTS)
    check_outputs([o.name for o in wanted])
    return wanted


class InferenceService:
    """The RPCs (the protocol's method names), answered from a ServerState."""

    def __init__(self, state: ServerState) -> None:
        self.state = state

    def ServerLive(self, request: Any, context: Any) -> Any:
        return pb.ServerLiveResponse(live=True)

    def ServerReady(self, request: Any, context: Any) -> Any:
        return pb.ServerReadyResponse(ready=self.state.health() is None)

    def ModelReady(self, request: Any, context: Any) -> Any:
        self.state.check_model(request.name, request.version)
        return pb.ModelReadyResponse(ready=self.state.health() is None)

    def ServerMetadata(self, request: Any, context: Any) -> Any:
        return pb.ServerMetadataResponse(**self.state.server_metadata())

    def ModelMetadata(self, request: Any, context: Any) -> Any:
        self.state.check_model(request.name, request.version)
        meta = self.state.metadata()
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(name=meta["name"], versions=meta["versions"], platform=meta["platform"],
                                        inputs=[tensor(**t) for t in meta["inputs"]],
                                        outputs=[tensor(**t) for t in meta["outputs"]])

    def ModelConfig(self, request: Any, context: Any) -> Any:
        self.state.check_model(request.name, request.version)
        return json_format.ParseDict({"config": self.state.triton_config()}, pb.ModelConfigResponse())

    def ModelStatistics(self, request: Any, context: Any) -> Any:
        self.state.check_model(request.name or None, request.version)
        return json_format.ParseDict({"model_stats": [self.state.stats.to_dict()]}, pb.ModelStatisticsResponse())

    def RepositoryIndex(self, request: Any, context: Any) -> Any:
        return json_format.ParseDict({"models": self.state.repository_index()}, pb.RepositoryIndexResponse())

    def RepositoryModelLoad(self, request: Any, context: Any) -> Any:
        self.state.load(request.model_name)
        return pb.RepositoryModelLoadResponse()

    def RepositoryModelUnload(self, request: Any, context: Any) -> Any:
        self.state.load(request.model_name, unload=True)
        return pb.RepositoryModelUnloadResponse()

    def SystemSharedMemoryStatus(self, request: Any, context: Any) -> Any:
        regions = {r["name"]: r for r in self.state.shm.status(request.name or None)}
        return json_format.ParseDict({"regions": regions}, pb.SystemSharedMemoryStatusResponse())

    def SystemSharedMemoryRegister(self, request: Any, context: Any) -> Any:
        self.state.shm.register(request.name, request.key, request.offset, request.byte_size)
        return pb.SystemSharedMemoryRegisterResponse()

    def SystemSharedMemoryUnregister(self, request: Any, context: Any) -> Any:
        self.state.shm.unregister(request.name or None)
        return pb.SystemSharedMemoryUnregisterResponse()

    def CudaSharedMemoryStatus(self, request: Any, context: Any) -> Any:
        if request.name:
            raise ProtocolError(404, f"unknown CUDA shared-memory region {request.name!r}")
        return pb.CudaSharedMemoryStatusResponse()

    def CudaSharedMemoryRegister(self, request: Any, context: Any) -> Any:
        raise ProtocolError(400, CUDA_SHM_REFUSED)

    def CudaSharedMemoryUnregister(self, request: Any, context: Any) -> Any:
        return pb.CudaSharedMemoryUnregisterResponse()

    async def ModelInfer(self, request: Any, context: Any) -> Any:
        state = self.state
        state.check_model(request.model_name, request.model_version)
        rows = infer_rows(request, state.info.input.name, state.info.item_shape, state.config.max_batch, state.shm.read)
        wanted = _requested(request)
        logits = await state.predict(rows, _timeout_s(request, context))
        tensors = output_tensors(logits, wanted, state.shm.write)
        response = pb.ModelInferResponse(model_name=state.name, model_version=MODEL_VERSION, id=request.id)
        for output in wanted:
            array = np.ascontiguousarray(tensors[output.name], dtype="<f4")
            entry = response.outputs.add(name=output.name, datatype=DATATYPE, shape=list(array.shape))
            if output.shm is not None:
                entry.parameters["shared_memory_region"].string_param = output.shm[0]
                entry.parameters["shared_memory_byte_size"].int64_param = array.nbytes
                response.raw_output_contents.append(b"")  # keeps raw contents aligned with outputs
            else:
                response.raw_output_contents.append(array.tobytes())
        return response


# HTTP/2 streams one connection may hold open. grpcio counts a stream until the transport has freed it and
# refuses more (its overload protection, what absorbs rapid reset), so a client running at the limit sees
# UNAVAILABLE: 256 leaves room for clients with hundreds of calls in flight (docs/decisions.md)
STREAMS_PER_CONNECTION = 256
PEER_SHARE = 4  # one connection reads at most 1/PEER_SHARE of the message reservations at once (at least one)


class MessageReader:
    """Receives each call's one request message within the read deadline, against the shared buffer budget.

    While a message is read, the message size limit is reserved from the budget (the transport may buffer that
    much before it is whole); once it is in, only its own bytes stay held until the call ends. A connection
    reads at most its share of the reservations at once; a read that finds no room waits for it within the
    read deadline. So neither slow senders nor a flood of large messages can take the server's memory, and
    one connection cannot take every reservation from the others.
    """

    def __init__(self, state: ServerState, limit: int) -> None:
        self.budget, self.limit, self.timeout_s = state.buffers, limit, state.config.read_timeout_s
        self.per_peer = max(1, state.buffers.capacity // limit // PEER_SHARE)
        self._reading: dict[str, int] = {}  # connection -> messages being read now
        self._freed: asyncio.Future[None] | None = None  # done when a reservation is given back

    async def receive(self, context: Any, method: str) -> tuple[bytes, int]:
        """The request message and the bytes held for it (give them back with :meth:`release`)."""
        import grpc

        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        peer = context.peer()
        await self._reserve(peer, deadline)
        try:
            data = await asyncio.wait_for(context.read(), max(0.0, deadline - loop.time()))
        except TimeoutError:
            self.release(self.limit)
            raise ProtocolError(408, f"the {method} request message did not arrive within "
                                     f"{self.timeout_s:g} s") from None
        except BaseException:
            self.release(self.limit)
            raise
        finally:
            count = self._reading.pop(peer, 1) - 1
            if count:
                self._reading[peer] = count
        if data is grpc.aio.EOF:
            self.release(self.limit)
            raise ProtocolError(400, f"no {method} request message")
        self.release(self.limit - len(data))
        return data, len(data)

    async def _reserve(self, peer: str, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        while self._reading.get(peer, 0) >= self.per_peer or not self.budget.try_take(self.limit):
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise self.budget.refusal("request messages", status=429)
            if self._freed is None or self._freed.done():
                self._freed = loop.create_future()
            with contextlib.suppress(asyncio.TimeoutError):  # HTTP gives bytes back without waking us: look again
                await asyncio.wait_for(asyncio.shield(self._freed), min(remaining, 0.25))
        self._reading[peer] = self._reading.get(peer, 0) + 1

    def release(self, held: int) -> None:
        """Give ``held`` bytes back to the budget and wake the reads waiting for room."""
        self.budget.give(held)
        if self._freed is not None and not self._freed.done():
            self._freed.set_result(None)


def _parse(message: Any, method: str, data: bytes) -> Any:
    try:
        return message.FromString(data)
    except Exception as exc:  # protobuf's DecodeError, or anything a broken message raises
        log.warning("gRPC %s: undecodable request message (%s)", method, type(exc).__name__)
        raise ProtocolError(400, f"the {method} request message could not be decoded") from None


def _handler(service: InferenceService, method: str, reader: MessageReader) -> Any:
    """A stream-unary handler for a unary method (the same frames on the wire): it reads the one request
    message itself, so that its arrival has a deadline and its bytes a budget."""
    import grpc

    call = getattr(service, method)
    is_async = asyncio.iscoroutinefunction(call)
    state = service.state
    metrics = state.metrics
    endpoint = "grpc_infer" if method == "ModelInfer" else "grpc"
    prefix = "ModelInfer" if method == "ModelInfer" else method
    request_type, response_type = getattr(pb, f"{prefix}Request"), getattr(pb, f"{prefix}Response")

    def count(code: str, start: float) -> None:
        metrics.count(endpoint, code)
        if method == "ModelInfer":
            state.stats.request(code == "OK", time.perf_counter() - start)

    async def handle(request_iterator: Any, context: Any) -> Any:
        start = time.perf_counter()
        held = 0
        try:
            data, held = await reader.receive(context, method)
            request = _parse(request_type, method, data)
            del data
            response = await call(request, context) if is_async else call(request, context)
        except ProtocolError as exc:
            code = STATUS.get(exc.status, "INTERNAL")
            count(code, start)  # before the client hears the answer: a metric read after it sees the call
            await context.abort(getattr(grpc.StatusCode, code), exc.message)
        except asyncio.CancelledError:
            count("CANCELLED", start)  # the client went away or its deadline passed
            raise
        except Exception:
            count("INTERNAL", start)
            log.exception("gRPC %s failed", method)
            raise
        finally:
            if held:
                reader.release(held)
        count("OK", start)
        return response

    return grpc.stream_unary_rpc_method_handler(handle, response_serializer=response_type.SerializeToString)


def grpc_options(config: Any, message_limit: int) -> list[tuple[str, int]]:
    """grpcio's settings for the server's limits: message size, streams per connection, idle keep-alive,
    connection count, handshake time."""
    return [("grpc.max_receive_message_length", message_limit), ("grpc.max_send_message_length", message_limit),
            ("grpc.max_concurrent_streams", STREAMS_PER_CONNECTION), ("grpc.so_reuseport", 0),
            ("grpc.max_connection_idle_ms", int(config.keep_alive_s * 1000)),
            ("grpc.max_allowed_incoming_connections", config.max_connections),
            ("grpc.server_handshake_timeout_ms", int(config.read_timeout_s * 1000))]


class GrpcServer:
    """grpcio's asyncio server on a thread and event loop of its own (requests still meet HTTP's in the
    one batcher, which hands each loop its results)."""

    def __init__(self, state: ServerState, host: str, port: int) -> None:
        self.state, self.address = state, f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self._error: BaseException | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bninception-grpc", daemon=True)

    def start(self) -> GrpcServer:
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            raise BninceptionError(f"cannot listen on {self.address} for gRPC: {self._error}") from None
        return self

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        import grpc

        state = self.state
        limit = state.max_message_bytes
        try:
            service, reader = InferenceService(state), MessageReader(state, limit)
            server = grpc.aio.server(options=grpc_options(state.config, limit),
                                     maximum_concurrent_rpcs=state.config.max_connections)
            server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
                SERVICE, {method: _handler(service, method, reader) for method in METHODS}),))
            self.port = server.add_insecure_port(self.address)
            if not self.port:
                raise RuntimeError("the port is taken or not valid")
            await server.start()
        except Exception as exc:
            self._error = exc
            self._started.set()
            return
        self._loop, self._server = asyncio.get_running_loop(), server
        self._started.set()
        await server.wait_for_termination()

    def stop(self, grace: float | None = None) -> None:
        """Stop taking calls; running ones get ``grace`` seconds."""
        if self._loop is not None and self._thread.is_alive():
            done = asyncio.run_coroutine_threadsafe(self._server.stop(grace), self._loop)
            with contextlib.suppress(Exception):
                done.result((grace or 0) + 5)
        self._thread.join((grace or 0) + 5)


def start_grpc(state: ServerState, host: str, port: int) -> GrpcServer:
    """The gRPC service for ``state`` on ``host:port`` (0: an ephemeral port), started."""
    return GrpcServer(state, host, port).start()
