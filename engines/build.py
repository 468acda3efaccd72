"""Compile an ONNX model into a serialized TensorRT plan (needs TensorRT and a GPU).

Builder -> strongly typed network -> OnnxParser -> config (workspace, optimization level, timing
cache, TF32 off for FP32, hardware compatibility) -> one batch profile -> ``build_serialized_network``.
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
from bninception.engines.trtlog import collect_errors, describe, process_logger
from bninception.export.onnx_io import MAX_ONNX_BYTES

if TYPE_CHECKING:
    import tensorrt

log = logging.getLogger(__name__)


class _ParserErrorLike(Protocol):
    def node(self) -> int: ...
    def node_name(self) -> str: ...
    def node_operator(self) -> str: ...
    def desc(self) -> str: ...
    def code(self) -> Any: ...


def format_parser_errors(errors: Iterable[_ParserErrorLike], onnx_path: str, logged: Iterable[str] = ()) -> str:
    """One line per ONNX parser error: node index and name, operator, error code, description."""
    lines = []
    for err in errors:
        name = err.node_name() or "<unnamed>"
        operator = err.node_operator() or "<unknown op>"
        lines.append(f"  node {err.node()} {name!r} ({operator}): {err.desc()} [{err.code()}]")
    if not lines:
        lines.extend(f"  {msg}" for msg in logged)
    if not lines:
        lines.append("  (the parser reported failure without an error record)")
    return f"TensorRT could not parse {onnx_path}:\n" + "\n".join(lines)


def load_timing_cache(trt: Any, config: tensorrt.IBuilderConfig, path: Path | None) -> tensorrt.ITimingCache | None:
    """Attach the timing cache at ``path`` (or a fresh one) to ``config``; None when none can be made.

    An unreadable blob or one of another GPU falls back to a fresh cache.
    """
    blob = b""
    if path is not None and path.is_file():
        blob = path.read_bytes()
        log.info("timing cache: loaded %s (%d bytes)", path, len(blob))
    cache = config.create_timing_cache(blob)
    if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
        return cache
    if blob:
        log.warning("timing cache %s is unusable with this TensorRT/GPU (%s); starting a fresh one", path,
                    "unreadable" if cache is None else "mismatch")
    cache = config.create_timing_cache(b"")
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        log.warning("TensorRT could not create a timing cache; building without one")
        return None
    return cache


def build_plan(onnx_path: str | os.PathLike[str], spec: EngineSpec, onnx_input: OnnxInput,
               timing_cache: Path | None = None) -> tuple[bytes, dict[str, Any]]:
    """Build the plan for ``spec`` from ``onnx_path``; returns (plan bytes, policy for the sidecar)."""
    import tensorrt as trt

    onnx_path = Path(onnx_path)
    if onnx_path.stat().st_size > MAX_ONNX_BYTES:
        raise BninceptionError(f"{onnx_path} is larger than 2 GiB; export it with external data")
    min_shape, opt_shape, max_shape = profile_shapes(onnx_input.shape, spec.profile, onnx_input.name)
    shim.check_hardware_compatibility(trt, spec.options.hardware_compatibility)  # before any work

    logger = process_logger(trt)
    with collect_errors() as errors:
        builder = trt.Builder(logger)
        network = shim.create_network(trt, builder)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(onnx_path.read_bytes(), str(onnx_path)):
            records = [parser.get_error(i) for i in range(parser.num_errors)]
            raise BninceptionError(format_parser_errors(records, str(onnx_path), errors))

        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, spec.options.workspace_bytes)
        config.builder_optimization_level = spec.options.opt_level
        shim.set_hardware_compatibility(trt, config, spec.options.hardware_compatibility)
        policy = shim.configure_precision(trt, config, spec.precision)
        cache = load_timing_cache(trt, config, timing_cache)

        profile = builder.create_optimization_profile()
        profile.set_shape(onnx_input.name, trt.Dims(list(min_shape)), trt.Dims(list(opt_shape)),
                          trt.Dims(list(max_shape)))
        config.add_optimization_profile(profile)

        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise BninceptionError(f"TensorRT failed to build a {spec.precision} engine from {onnx_path}: "
                                   f"{describe(errors)}")
    if timing_cache is not None and cache is not None:
        atomic_write_bytes(timing_cache, bytes(cache.serialize()))
    policy["profile_shapes"] = {"min": list(min_shape), "opt": list(opt_shape), "max": list(max_shape)}
    policy["timing_cache"] = "used" if cache is not None else "none"
    return bytes(serialized), policy
