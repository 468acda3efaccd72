"""The Open Inference Protocol (KServe V2) infer request/response with the binary data extension.

Pure functions on bytes; every client mistake raises ``ProtocolError(status, message)``.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

HEADER_LENGTH = "Inference-Header-Content-Length"
DATATYPE = "FP32"
OUTPUTS = ("logits", "probabilities")
EXTENSIONS = ["binary_tensor_data", "model_configuration", "statistics", "model_repository",
              "system_shared_memory"]
MAX_MESSAGE = 512  # characters of an error message
MAX_TIMEOUT_US = 1 << 53  # larger integers do not survive the conversion to seconds


class ProtocolError(Exception):
    """A request the server refuses: HTTP ``status`` with ``{"error": message}``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        if len(message) > MAX_MESSAGE:  # messages may quote what a client sent: never echo it unbounded
            message = message[:MAX_MESSAGE] + "... (truncated)"
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def bad(message: str) -> ProtocolError:
    return ProtocolError(400, message)


Span = tuple[str, int, int]  # a shared-memory region, offset and byte size


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool
    shm: Span | None = None


@dataclass(frozen=True)
class InferRequest:
    """A validated infer request: one float32 NCHW batch and the outputs wanted back."""

    id: str | None
    data: np.ndarray
    outputs: tuple[RequestedOutput, ...]
    timeout_s: float | None


def check_declared_length(headers: dict[bytes, bytes], limit: int) -> None:
    """Refuse a request whose ``Content-Length`` is not an integer (400) or exceeds ``limit`` (413)."""
    declared = headers.get(b"content-length")
    if declared is None:
        return
    try:
        size = int(declared)
    except ValueError:
        raise ProtocolError(400, f"Content-Length must be an integer, got {declared[:32].decode(errors='replace')!r}",
                            {"Connection": "close"}) from None
    if size > limit:
        raise ProtocolError(413, f"request body of {size} bytes exceeds the limit of {limit} bytes",
                            {"Connection": "close"})


def decode_content(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo ``Content-Encoding`` gzip/deflate, refusing output above ``limit`` bytes (413)."""
    if not encoding or encoding.strip().lower() == "identity":
        return body
    kind = encoding.strip().lower()
    if kind not in ("gzip", "deflate"):
        raise ProtocolError(415, f"unsupported Content-Encoding {encoding!r} (use gzip, deflate or none)")
    decoder = zlib.decompressobj(wbits=31 if kind == "gzip" else 15)
    try:
        out = decoder.decompress(body, limit + 1)
    except zlib.error as exc:
        raise bad(f"body is not valid {kind} data: {exc}") from exc
    if len(out) > limit or decoder.unconsumed_tail:
        raise ProtocolError(413, f"decompressed body exceeds the limit of {limit} bytes")
    return out


def _split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes | memoryview]:
    if header_length is None:
        return body, b""
    try:
        length = int(header_length)
    except ValueError:
        raise bad(f"{HEADER_LENGTH} must be an integer, got {header_length!r}") from None
    if not 0 < length <= len(body):
        raise bad(f"{HEADER_LENGTH} is {length} but the body has {len(body)} bytes")
    return body[:length], memoryview(body)[length:]


def json_object(raw: bytes, what: str = "the request header") -> dict[str, Any]:
    """A JSON object from a client, or a 400 naming ``what`` was malformed."""
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise bad(f"malformed JSON in {what}: {exc}") from None
    except RecursionError:
        raise bad(f"malformed JSON in {what}: nested too deeply") from None
    if not isinstance(obj, dict):
        raise bad(f"the request must be a JSON object, got {type(obj).__name__}")
    return obj


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parameters(obj: dict[str, Any], where: str) -> dict[str, Any]:
    params = obj.get("parameters", {})
    if not isinstance(params, dict):
        raise bad(f"{where}: 'parameters' must be a JSON object")
    return params


def _flatten_numbers(data: Any, name: str) -> list[Any]:
    if not isinstance(data, list):
        raise bad(f"input {name!r}: 'data' must be a JSON array")
    flat = data
    while flat and any(isinstance(v, list) for v in flat):
        if not all(isinstance(v, list) for v in flat):
            raise bad(f"input {name!r}: 'data' mixes numbers and nested arrays")
        flat = list(itertools.chain.from_iterable(flat))
    if not set(map(type, flat)) <= {int, float}:
        kinds = sorted({type(v).__name__ for v in flat} - {"int", "float"})
        raise bad(f"input {name!r}: datatype FP32 needs numbers in 'data', found {', '.join(kinds)}")
    return flat


def check_shape(raw: Any, name: str, item_shape: tuple[int, ...], max_batch: int) -> tuple[int, ...]:
    expected = [-1, *item_shape]
    if not isinstance(raw, list) or not all(_is_int(d) for d in raw):
        raise bad(f"input {name!r}: 'shape' must be a list of integers, got {raw!r}")
    if len(raw) != len(expected) or tuple(raw[1:]) != tuple(item_shape):
        raise bad(f"input {name!r}: shape {raw} does not match the model's {expected}")
    if not 1 <= raw[0] <= max_batch:
        raise bad(f"input {name!r}: batch size {raw[0]} is outside 1..{max_batch} (the max batch size)")
    return tuple(raw)


def check_input(name: str, datatype: Any, shape: Any, input_name: str, item_shape: tuple[int, ...],
                max_batch: int) -> tuple[int, ...]:
    """The name, datatype and shape of a request's one input (both protocols); its shape."""
    if name != input_name:
        raise bad(f"unknown input {name!r}; the model takes one input {input_name!r}")
    if datatype != DATATYPE:
        raise bad(f"input {name!r}: datatype {datatype!r} is not supported; the model takes {DATATYPE}")
    return check_shape(shape, name, item_shape, max_batch)


def one_source(name: str, given: dict[str, bool]) -> str:
    """The one way an input's values come (``given``: each way and whether the request uses it)."""
    used = [way for way, present in given.items() if present]
    if len(used) != 1:
        raise bad(f"input {name!r} needs exactly one of {', '.join(given)}; it has {' and '.join(used) or 'none'}")
    return used[0]


def check_bytes(name: str, what: str, size: int, shape: tuple[int, ...]) -> None:
    """Refuse ``size`` bytes of FP32 values that do not fill ``shape``."""
    count = math.prod(shape)
    if size != count * 4:
        raise bad(f"input {name!r}: {what} {size} does not match shape {list(shape)} "
                  f"({count} FP32 values = {count * 4} bytes)")


def shm_span(params: dict[str, Any], where: str) -> Span | None:
    """The shared-memory region, offset and byte size a tensor's parameters name (None: none)."""
    region = params.get("shared_memory_region")
    if region is None:
        return None
    size, offset = params.get("shared_memory_byte_size"), params.get("shared_memory_offset", 0)
    if not isinstance(region, str) or not _is_int(size) or not _is_int(offset) or size <= 0 or offset < 0:
        raise bad(f"{where}: shared_memory_region needs a string name, shared_memory_byte_size > 0 and "
                  f"shared_memory_offset >= 0")
    return region, offset, size


def check_outputs(names: list[str]) -> None:
    """Refuse an output the model does not have, or one asked for twice."""
    for name in names:
        if name not in OUTPUTS:
            raise bad(f"unknown output {name!r}; the model has outputs {list(OUTPUTS)}")
    if len(set(names)) != len(names):
        raise bad(f"an output is requested twice: {names}")


def _outputs(obj: dict[str, Any], all_binary: bool) -> tuple[RequestedOutput, ...]:
    raw = obj.get("outputs")
    if raw is None:
        return tuple(RequestedOutput(name, all_binary) for name in OUTPUTS)
    if not isinstance(raw, list) or not raw or not all(isinstance(e, dict) and isinstance(e.get("name"), str)
                                                       for e in raw):
        raise bad("'outputs' must be a non-empty list of {\"name\": ...} objects")
    check_outputs([entry["name"] for entry in raw])
    wanted: list[RequestedOutput] = []
    for entry in raw:
        name = entry["name"]
        params = _parameters(entry, f"output {name!r}")
        if params.get("classification"):
            raise bad("the classification extension is not supported; use POST /v1/classify")
        binary = params.get("binary_data", all_binary)
        if not isinstance(binary, bool):
            raise bad(f"output {name!r}: parameter binary_data must be true or false")
        wanted.append(RequestedOutput(name, binary, shm_span(params, f"output {name!r}")))
    return tuple(wanted)


@dataclass(frozen=True)
class _Plan:
    """What a request header asks for: everything but the tensor bytes (for JSON data, the tensor too)."""

    id: str | None
    outputs: tuple[RequestedOutput, ...]
    timeout_s: float | None
    shape: tuple[int, ...]
    data: np.ndarray | None  # set for JSON data; None: ``shape`` FP32 values from the binary part or ``shm``
    shm: Span | None = None


def _request_parameters(obj: dict[str, Any]) -> tuple[str | None, bool, float | None]:
    """The request's id, ``binary_data_output`` and timeout (seconds)."""
    request_id = obj.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise bad("'id' must be a string")
    params = _parameters(obj, "request")
    all_binary = params.get("binary_data_output", False)
    if not isinstance(all_binary, bool):
        raise bad("parameter binary_data_output must be true or false")
    timeout_s = None
    if "timeout" in params:
        if not _is_int(params["timeout"]) or not 0 < params["timeout"] <= MAX_TIMEOUT_US:
            raise bad(f"parameter timeout must be a positive integer of at most {MAX_TIMEOUT_US} (microseconds)")
        timeout_s = params["timeout"] / 1e6
    return request_id, all_binary, timeout_s


def _the_input(obj: dict[str, Any], input_name: str) -> dict[str, Any]:
    inputs = obj.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise bad(f"'inputs' must be a non-empty list; the model takes one input {input_name!r}")
    if len(inputs) > 1:
        names = [e.get("name") if isinstance(e, dict) else e for e in inputs]
        raise bad(f"{len(inputs)} inputs {names}; the model takes one input {input_name!r}")
    entry = inputs[0]
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise bad("each input must be an object with a string 'name'")
    return entry


def _json_data(entry: dict[str, Any], name: str, shape: tuple[int, ...]) -> np.ndarray:
    flat = _flatten_numbers(entry["data"], name)
    if len(flat) != math.prod(shape):
        raise bad(f"input {name!r}: {len(flat)} values in 'data' but shape {list(shape)} needs {math.prod(shape)}")
    try:
        return np.asarray(flat, dtype=np.float32).reshape(shape)
    except OverflowError:
        raise bad(f"input {name!r} has a number too large for {DATATYPE}") from None


def _binary_size(size: Any, name: str, shape: tuple[int, ...], binary_size: int) -> int:
    if not _is_int(size) or size < 0:
        raise bad(f"input {name!r}: binary_data_size must be a non-negative integer")
    check_bytes(name, "binary_data_size", size, shape)
    if size > binary_size:
        raise bad(f"input {name!r}: binary_data_size {size} but only {binary_size} bytes of binary data follow "
                  f"the header")
    return int(size)


def _plan(header: bytes, binary_size: int, input_name: str, item_shape: tuple[int, ...],
          max_batch: int) -> _Plan:
    obj = json_object(header)
    request_id, all_binary, timeout_s = _request_parameters(obj)
    entry = _the_input(obj, input_name)
    name = entry["name"]
    shape = check_input(name, entry.get("datatype"), entry.get("shape"), input_name, item_shape, max_batch)
    input_params = _parameters(entry, f"input {name!r}")
    size = input_params.get("binary_data_size")
    shm = shm_span(input_params, f"input {name!r}")
    source = one_source(name, {"'data'": "data" in entry, "binary_data_size": size is not None,
                               "shared memory": shm is not None})
    data: np.ndarray | None = None
    claimed = 0
    if shm is not None:
        check_bytes(name, "shared_memory_byte_size", shm[2], shape)
    elif source == "binary_data_size":
        claimed = _binary_size(size, name, shape, binary_size)
    else:
        data = _json_data(entry, name, shape)
    if claimed != binary_size:
        raise bad(f"{binary_size - claimed} bytes of binary data after the header are not claimed by "
                  f"any input's binary_data_size")
    return _Plan(request_id, _outputs(obj, all_binary), timeout_s, shape, data, shm)


# Binary requests repeat the same small header (only the tensor bytes change): validate each once.
_cached_plan = functools.lru_cache(maxsize=256)(_plan)
CACHED_HEADER_BYTES = 2048


def parse_infer_request(body: bytes, header_length: str | None, input_name: str,
                        item_shape: tuple[int, ...], max_batch: int,
                        read_shm: Callable[[str, int, int], bytes] | None = None) -> InferRequest:
    """Validate a V2 infer request body (JSON, or JSON header + binary tensor data, or shared memory
    read through ``read_shm``). Non-finite values pass through to the model, as in Triton."""
    header, binary = _split_body(body, header_length)
    binary_size = len(body) - len(header)
    if binary_size and len(header) <= CACHED_HEADER_BYTES:
        plan = _cached_plan(header, binary_size, input_name, item_shape, max_batch)
    else:
        plan = _plan(header, binary_size, input_name, item_shape, max_batch)
    if plan.shm is not None:
        if read_shm is None:
            raise bad("shared memory is not available on this route")
        binary = read_shm(*plan.shm)
    data = plan.data if plan.data is not None else np.frombuffer(binary, dtype="<f4").reshape(plan.shape)
    return InferRequest(plan.id, data, plan.outputs, plan.timeout_s)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def _json_numbers(array: np.ndarray) -> list[float | None]:
    """Flat values for a JSON ``data`` array: NaN and infinities (which JSON cannot hold) become null."""
    values: list[float | None] = array.ravel().tolist()
    if not np.isfinite(array).all():
        values = [v if math.isfinite(v) else None for v in values]  # type: ignore[arg-type]
    return values


def output_tensors(logits: np.ndarray, outputs: tuple[RequestedOutput, ...],
                   write_shm: Callable[[str, int, bytes], None] | None) -> dict[str, np.ndarray]:
    """The requested outputs of ``logits`` (both protocols); each that names a shared-memory region is
    written into it (400 when it does not fit)."""
    tensors = {"logits": logits.astype(np.float32, copy=False)}
    if any(o.name == "probabilities" for o in outputs):
        tensors["probabilities"] = softmax(logits)
    for wanted in outputs:
        if wanted.shm is None:
            continue
        blob = np.ascontiguousarray(tensors[wanted.name], dtype="<f4").tobytes()
        region, offset, size = wanted.shm
        if write_shm is None:
            raise bad("shared memory is not available on this route")
        if len(blob) > size:
            raise bad(f"output {wanted.name!r} has {len(blob)} bytes, more than its shared_memory_byte_size {size}")
        write_shm(region, offset, blob)
    return tensors


def encode_infer_response(model_name: str, version: str, request: InferRequest, logits: np.ndarray,
                          write_shm: Callable[[str, int, bytes], None] | None = None) -> tuple[bytes, dict[str, str]]:
    """Response body and headers; binary outputs follow the JSON header in request order, outputs with
    a shared-memory region are written there."""
    tensors = output_tensors(logits, request.outputs, write_shm)
    outputs: list[dict[str, Any]] = []
    blobs = []
    for wanted in request.outputs:
        array = tensors[wanted.name]
        entry: dict[str, Any] = {"name": wanted.name, "datatype": DATATYPE, "shape": list(array.shape)}
        if wanted.shm is None and wanted.binary:  # (one in shared memory has no parameters, as in Triton)
            blob = np.ascontiguousarray(array, dtype="<f4").tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        elif wanted.shm is None:
            entry["data"] = _json_numbers(array)
        outputs.append(entry)
    response: dict[str, Any] = {"model_name": model_name, "model_version": version, "outputs": outputs}
    if request.id is not None:
        response["id"] = request.id
    header = json.dumps(response, separators=(",", ":"), allow_nan=False).encode()
    if not blobs:
        return header, {"Content-Type": "application/json"}
    return header + b"".join(blobs), {"Content-Type": "application/octet-stream",
                                      HEADER_LENGTH: str(len(header))}
