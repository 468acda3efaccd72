"""Compile an ONNX model into a serialized TensorRT plan (needs TensorRT and a GPU).

Logger -> Builder -> strongly typed network (see :mod:`shim`) -> OnnxParser -> config
(workspace pool, optimization level, timing cache, TF32 off for FP32, optional hardware
compatibility) -> one optimization profile on the batch axis -> ``build_serialized_network``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from bninception.core.errors import BninceptionError
from bninception.core.files import atomic_write_bytes
from bninception.engines import shim
from bninception.engines.key import EngineSpec
from bninception.engines.profile import OnnxInput, profile_shapes

if TYPE_CHECKING:
    import tensorrt

log = logging.getLogger(__name__)
MAX_ONNX_BYTES = 2 << 30  # protobuf's own limit; larger models need external data


class _ParserErrorLike(Protocol):
    def node(self) -> int: ...
    def node_name(self) -> str: ...
    def node_operator(self) -> str: ...
    def desc(self) -> str: ...
    def code(self) -> Any: ...


def format_parser_errors(errors: Iterable[_ParserErrorLike], onnx_path: str) -> str:
    """One line per ONNX parser error: node index and name, operator, error code, description."""
    lines = []
    for err in errors:
        name = err.node_name() or "<unnamed>"
        operator = err.node_operator() or "<unknown op>"
        lines.append(f"  node {err.node()} {name!r} ({operator}): {err.desc()} [{err.code()}]")
    if not lines:
        lines.append("  (the parser reported failure without an error record)")
    return f"TensorRT could not parse {onnx_path}:\n" + "\n".join(lines)


def _collecting_logger() -> Any:
    """A ``trt.ILogger`` that forwards to logging and keeps errors for the exception message."""
    import tensorrt as trt

    class CollectingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: trt.ILogger.Severity, msg: str) -> None:
            if severity in (trt.ILogger.INTERNAL_ERROR, trt.ILogger.ERROR):
                self.errors.append(msg)
                log.error("tensorrt: %s", msg)
            elif severity == trt.ILogger.WARNING:
                log.warning("tensorrt: %s", msg)
            else:
                log.debug("tensorrt: %s", msg)

    return CollectingLogger()


def _load_timing_cache(config: tensorrt.IBuilderConfig, path: Path | None) -> tensorrt.ITimingCache:
    blob = b""
    if path is not None and path.is_file():
        blob = path.read_bytes()
        log.info("timing cache: loaded %s (%d bytes)", path, len(blob))
    cache = config.create_timing_cache(blob)
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        log.warning("timing cache %s does not match this TensorRT/GPU; starting a fresh one", path)
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    return cache


def build_plan(onnx_path: str | os.PathLike[str], spec: EngineSpec, onnx_input: OnnxInput,
               timing_cache: Path | None = None) -> tuple[bytes, dict[str, Any]]:
    """Build the plan for ``spec`` from ``onnx_path``; returns (plan bytes, policy for the sidecar)."""
    import tensorrt as trt

    onnx_path = Path(onnx_path)
    if onnx_path.stat().st_size > MAX_ONNX_BYTES:
        raise BninceptionError(f"{onnx_path} is larger than 2 GiB; export it with external data")
    min_shape, opt_shape, max_shape = profile_shapes(onnx_input.shape, spec.profile, onnx_input.name)

    logger = _collecting_logger()
    builder = trt.Builder(logger)
    network = shim.create_network(trt, builder)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes(), str(onnx_path)):
        errors = [parser.get_error(i) for i in range(parser.num_errors)]
        raise BninceptionError(format_parser_errors(errors, str(onnx_path)))

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, spec.options.workspace_bytes)
    config.builder_optimization_level = spec.options.opt_level
    shim.set_hardware_compatibility(trt, config, spec.options.hardware_compatibility)
    policy = shim.configure_precision(trt, config, spec.precision)
    cache = _load_timing_cache(config, timing_cache)

    profile = builder.create_optimization_profile()
    profile.set_shape(onnx_input.name, trt.Dims(list(min_shape)), trt.Dims(list(opt_shape)),
                      trt.Dims(list(max_shape)))
    config.add_optimization_profile(profile)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        detail = "; ".join(logger.errors[-5:]) or "see the TensorRT log above"
        raise BninceptionError(f"TensorRT failed to build a {spec.precision} engine from {onnx_path}: "
                               f"{detail}")
    if timing_cache is not None:
        atomic_write_bytes(timing_cache, bytes(cache.serialize()))
    policy["profile_shapes"] = {"min": list(min_shape), "opt": list(opt_shape), "max": list(max_shape)}
    return bytes(serialized), policy
