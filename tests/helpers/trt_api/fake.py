"""Fake ``tensorrt`` modules whose API is exactly the real one of a version (``tests/helpers/trt_api/<version>.json``).

Every class, enum member, method and property comes from the JSON that ``extract.py`` wrote from
TensorRT's bindings source; nothing is hand-listed here. What *is* written here is behaviour, in the
``Sim*`` classes, for the calls this project makes; a simulated method that the version's bindings do
not list is invisible (AttributeError, as on the real module), a listed one that is not simulated
raises NotImplementedError, and a call whose arguments do not bind to the listed parameter names
raises TypeError (pybind11 would). TensorRT semantics the tests depend on are simulated too: the
first logger given to a Builder or Runtime receives every later message (TensorRT's logger is a
process singleton), ``create_timing_cache`` returns None for a blob it cannot read, and passing None
to ``set_timing_cache`` is a TypeError.
"""

from __future__ import annotations

import enum
import functools
import json
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

API_DIR = Path(__file__).resolve().parent
VERSIONS = ("10.8", "10.13", "11.x")


@functools.cache
def api(version: str) -> dict[str, Any]:
    """The recorded API of a TensorRT version (``10.8``, ``10.13``, ``11.x``)."""
    return json.loads((API_DIR / f"{version}.json").read_text(encoding="utf-8"))


@dataclass
class State:
    """What a fake module remembers across objects, and the failures a test asks for."""

    logger: Any = None  # the first logger handed to a Builder or Runtime: TensorRT logs only there
    events: list[tuple[Any, ...]] = field(default_factory=list)
    current_device: Callable[[], Any] = lambda: None  # what the "current CUDA device" is, per the test
    parse_errors: list[tuple[int, str, str, str]] = field(default_factory=list)  # node, name, op, desc
    parse_logs: list[str] = field(default_factory=list)  # errors logged while parsing
    build_errors: list[str] = field(default_factory=list)  # errors logged by a failing build
    deserialize_errors: list[str] = field(default_factory=list)
    io: tuple[str, str, tuple[int, ...], tuple[int, ...]] = ("input", "logits", (1, 4, 4), (10,))
    profile: tuple[int, int, int] = (1, 8, 32)

    def log(self, trt: Any, severity: str, message: str) -> None:
        if self.logger is not None:
            self.logger.log(getattr(trt.ILogger, severity), message)


# -- behaviour ---------------------------------------------------------------------------------------
class SimILogger:
    def __init__(self) -> None:
        pass


class SimLogger(SimILogger):
    def __init__(self, min_severity: Any = None) -> None:
        self.min_severity = min_severity

    def log(self, severity: Any, msg: str) -> None:
        self._trt._state.events.append(("default-logger", int(severity), msg))


def _register_logger(trt: Any, logger: Any) -> None:
    if not isinstance(logger, trt.ILogger):
        raise TypeError(f"incompatible function arguments: logger must be a tensorrt.ILogger, got {type(logger)}")
    if trt._state.logger is None:
        trt._state.logger = logger


class SimBuilder:
    def __init__(self, logger: Any) -> None:
        _register_logger(self._trt, logger)
        self._trt._state.events.append(("builder", logger))

    def create_network(self, flags: int = 0) -> Any:
        if not isinstance(flags, int):
            raise TypeError(f"create_network(): flags must be an int, got {type(flags).__name__}")
        self._trt._state.events.append(("create_network", flags))
        network = self._trt.INetworkDefinition()
        network._flags = flags
        return network

    def create_builder_config(self) -> Any:
        return self._trt.IBuilderConfig()

    def create_optimization_profile(self) -> Any:
        return self._trt.IOptimizationProfile()

    def build_serialized_network(self, network: Any, config: Any) -> Any:
        trt, state = self._trt, self._trt._state
        if not isinstance(network, trt.INetworkDefinition) or not isinstance(config, trt.IBuilderConfig):
            raise TypeError("build_serialized_network(): incompatible function arguments")
        state.events.append(("build", sorted(int(f) for f in config._flags), config._hw, config._profiles))
        if state.build_errors:
            for message in state.build_errors:
                state.log(trt, "ERROR", message)
            return None
        return trt.IHostMemory(b"PLAN:" + repr(sorted(int(f) for f in config._flags)).encode())


class SimINetworkDefinition:
    _flags = 0


class SimIBuilderConfig:
    def __init__(self) -> None:
        flags = self._trt.BuilderFlag
        self._flags = {flags.TF32}  # TensorRT's default: TF32 allowed
        self._hw = self._trt.HardwareCompatibilityLevel.NONE
        self._pools: dict[Any, int] = {}
        self._profiles: list[Any] = []
        self._cache: Any = None

    def _check_flag(self, flag: Any) -> None:
        if not isinstance(flag, self._trt.BuilderFlag):
            raise TypeError(f"incompatible function arguments: {flag!r} is not a tensorrt.BuilderFlag")

    def set_flag(self, flag: Any) -> None:
        self._check_flag(flag)
        self._flags.add(flag)

    def clear_flag(self, flag: Any) -> None:
        self._check_flag(flag)
        self._flags.discard(flag)

    def get_flag(self, flag: Any) -> bool:
        self._check_flag(flag)
        return flag in self._flags

    def set_memory_pool_limit(self, pool: Any, pool_size: int) -> None:
        if not isinstance(pool, self._trt.MemoryPoolType):
            raise TypeError("set_memory_pool_limit(): pool must be a tensorrt.MemoryPoolType")
        self._pools[pool] = int(pool_size)

    @property
    def hardware_compatibility_level(self) -> Any:
        return self._hw

    @hardware_compatibility_level.setter
    def hardware_compatibility_level(self, level: Any) -> None:
        if not isinstance(level, self._trt.HardwareCompatibilityLevel):
            raise TypeError("hardware_compatibility_level must be a tensorrt.HardwareCompatibilityLevel")
        self._hw = level

    def create_timing_cache(self, serialized_timing_cache: Any) -> Any:
        blob = bytes(memoryview(serialized_timing_cache))
        if blob.startswith(b"FOREIGN"):
            return None  # createTimingCache returns nullptr for a blob it cannot read
        cache = self._trt.ITimingCache()
        cache._blob = blob or b"CACHE"
        return cache

    def set_timing_cache(self, cache: Any, ignore_mismatch: bool) -> bool:
        if not isinstance(cache, self._trt.ITimingCache):
            raise TypeError("set_timing_cache(): incompatible function arguments. The following argument types "
                            f"are supported: (cache: tensorrt.ITimingCache, ignore_mismatch: bool); got {cache!r}")
        if cache._blob.startswith(b"OTHERGPU") and not ignore_mismatch:
            return False
        self._cache = cache
        return True

    def add_optimization_profile(self, profile: Any) -> int:
        self._profiles.append(profile._shapes)
        return len(self._profiles) - 1


class SimITimingCache:
    _blob = b""

    def serialize(self) -> Any:
        return self._trt.IHostMemory(self._blob)


class SimIHostMemory:
    def __init__(self, data: bytes = b"") -> None:
        self._data = bytes(data)

    def __bytes__(self) -> bytes:
        return self._data

    @property
    def nbytes(self) -> int:
        return len(self._data)


class SimOnnxParser:
    def __init__(self, network: Any, logger: Any) -> None:
        if not isinstance(network, self._trt.INetworkDefinition) or not isinstance(logger, self._trt.ILogger):
            raise TypeError("OnnxParser(): incompatible constructor arguments")
        self._errors: list[Any] = []

    def parse(self, model: Any, path: str | None = None) -> bool:
        trt, state = self._trt, self._trt._state
        bytes(memoryview(model))
        for message in state.parse_logs:
            state.log(trt, "ERROR", message)
        self._errors = [trt.ParserError(*e) for e in state.parse_errors]
        return not (self._errors or state.parse_logs)

    @property
    def num_errors(self) -> int:
        return len(self._errors)

    def get_error(self, index: int) -> Any:
        return self._errors[index]


class SimParserError:
    def __init__(self, node: int, name: str, op: str, desc: str) -> None:
        self._values = (node, name, op, desc)

    def node(self) -> int:
        return self._values[0]

    def node_name(self) -> str:
        return self._values[1]

    def node_operator(self) -> str:
        return self._values[2]

    def desc(self) -> str:
        return self._values[3]

    def code(self) -> str:
        return "ErrorCode.UNSUPPORTED_NODE"


class SimIOptimizationProfile:
    def __init__(self) -> None:
        self._shapes: dict[str, tuple[tuple[int, ...], ...]] = {}

    def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:  # the bindings' names
        dims = (min, opt, max)
        if not all(isinstance(d, self._trt.Dims) for d in dims):
            raise TypeError("set_shape(): min/opt/max must be tensorrt.Dims")
        self._shapes[input] = tuple(tuple(d._shape) for d in dims)


class SimDims:
    def __init__(self, shape: Any = ()) -> None:
        self._shape = [int(d) for d in shape]

    def __len__(self) -> int:
        return len(self._shape)

    def __getitem__(self, index: int) -> int:
        return self._shape[index]


class SimRuntime:
    def __init__(self, logger: Any) -> None:
        _register_logger(self._trt, logger)

    def deserialize_cuda_engine(self, serialized_engine: Any) -> Any:
        trt, state = self._trt, self._trt._state
        bytes(memoryview(serialized_engine))
        state.events.append(("deserialize", state.current_device()))
        if state.deserialize_errors:
            for message in state.deserialize_errors:
                state.log(trt, "ERROR", message)
            return None
        return trt.ICudaEngine()


class SimICudaEngine:
    @property
    def num_io_tensors(self) -> int:
        return 2

    def _io(self) -> tuple[str, str, tuple[int, ...], tuple[int, ...]]:
        return self._trt._state.io

    def get_tensor_name(self, index: int) -> str:
        return self._io()[index]

    def get_tensor_mode(self, name: str) -> Any:
        mode = self._trt.TensorIOMode
        return mode.INPUT if name == self._io()[0] else mode.OUTPUT

    def get_tensor_dtype(self, name: str) -> Any:
        return self._trt.DataType.FLOAT

    def get_tensor_shape(self, name: str) -> Any:
        chw = self._io()[2] if name == self._io()[0] else self._io()[3]
        return self._trt.Dims([-1, *chw])

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[Any]:
        chw = self._io()[2]
        return [self._trt.Dims([b, *chw]) for b in self._trt._state.profile]

    def create_execution_context(self, strategy: Any = None) -> Any:
        self._trt._state.events.append(("create_execution_context", self._trt._state.current_device()))
        return self._trt.IExecutionContext()


class SimIExecutionContext:
    pass


SIMULATED = {"ILogger": SimILogger, "Logger": SimLogger, "Builder": SimBuilder,
             "INetworkDefinition": SimINetworkDefinition, "IBuilderConfig": SimIBuilderConfig,
             "ITimingCache": SimITimingCache, "IHostMemory": SimIHostMemory, "OnnxParser": SimOnnxParser,
             "ParserError": SimParserError, "IOptimizationProfile": SimIOptimizationProfile, "Dims": SimDims,
             "Runtime": SimRuntime, "ICudaEngine": SimICudaEngine, "IExecutionContext": SimIExecutionContext}
NP_TYPES = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "BOOL": np.bool_,
            "UINT8": np.uint8, "INT64": np.int64}


# -- the API guard -----------------------------------------------------------------------------------
def _binds(signatures: list[list[str]] | None, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether a call binds to one of the listed overloads (named parameters; ``x=`` has a default)."""
    if not signatures:
        return True
    for params in signatures:
        if not params:  # parameters without names: pybind11 accepts them positionally only
            if not kwargs:
                return True
            continue
        names = [p.rstrip("=") for p in params]
        positional = set(names[:len(args)])
        if len(args) > len(names) or any(k not in names or k in positional for k in kwargs):
            continue
        given = positional | set(kwargs)
        if all(n in given for n, p in zip(names, params, strict=True) if not p.endswith("=")):
            return True
    return False


def _checked(cls_name: str, method: str, impl: Callable[..., Any], signatures: list[list[str]] | None,
             version: str) -> Callable[..., Any]:
    @functools.wraps(impl)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not _binds(signatures, args, kwargs):
            raise TypeError(f"{cls_name}.{method}(): incompatible function arguments (TensorRT {version} "
                            f"accepts {signatures}; got {len(args)} positional, keywords {sorted(kwargs)})")
        return impl(self, *args, **kwargs)

    return call


def _missing(cls_name: str, method: str, version: str) -> Callable[..., Any]:
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"fake TensorRT {version}: {cls_name}.{method} exists in the bindings but is "
                                  "not simulated (add it to tests/helpers/trt_api/fake.py)")

    return call


class _Guarded:
    """Public attribute access limited to the version's bindings, like a pybind11 class without dynamic attrs."""

    _api: frozenset[str] = frozenset()
    _api_class: str = ""

    def __getattribute__(self, name: str) -> Any:
        cls = type(self)
        if not name.startswith("_") and cls.__dict__.get("_generated") and name not in cls._api:
            raise AttributeError(f"'tensorrt.{cls._api_class}' object has no attribute '{name}'")
        return object.__getattribute__(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        cls = type(self)
        if not name.startswith("_") and cls.__dict__.get("_generated") and name not in cls._api:
            raise AttributeError(f"'tensorrt.{cls._api_class}' object has no attribute '{name}'")
        object.__setattr__(self, name, value)


def _add_member(namespace: dict[str, Any], where: tuple[str, str], signatures: Any, sim: type,
                enums: dict[str, Any], version: str) -> None:
    """One attribute of a generated class: a nested enum, an exported enum member, a simulated method
    checked against its signatures, a plain property, or a stub that says it is not simulated."""
    name, attr = where
    nested = f"{name}.{attr}"
    if nested in enums:
        namespace[attr] = enums[nested]
        return
    exported = next((e for n, e in enums.items() if n.startswith(f"{name}.") and attr in e.__members__), None)
    if exported is not None:
        namespace[attr] = exported[attr]
        return
    impl = getattr(sim, attr, None)
    if signatures is None:  # a property: simulated, or a plain stored value
        if impl is None:
            namespace[attr] = None
        return
    if impl is None and attr.startswith("__"):  # __del__, __repr__, __eq__...: Python's defaults
        return
    namespace[attr] = _checked(name, attr, impl, signatures, version) if callable(impl) else _missing(name, attr,
                                                                                                      version)


def fake_tensorrt(version: str, **state: Any) -> types.ModuleType:
    """A fresh fake ``tensorrt`` module of ``version`` (``10.8``, ``10.13``, ``11.x``).

    ``state`` sets fields of :class:`State` (failures to simulate, the current-device probe).
    """
    record = api(version)
    trt = types.ModuleType("tensorrt")
    trt.__version__ = record["tensorrt"]  # type: ignore[attr-defined]
    trt._state = State(**state)  # type: ignore[attr-defined]
    trt._api = record  # type: ignore[attr-defined]
    enums: dict[str, Any] = {}
    for name, members in record["enums"].items():
        if any(v is None for v in members.values()):
            raise ValueError(f"{version}.json: enum {name} has members without a value: {members}")
        enums[name] = enum.IntEnum(name.split(".")[-1], members)  # type: ignore[misc]
        if "." not in name:
            setattr(trt, name, enums[name])
    classes: dict[str, type] = {}
    parents: dict[str, list[str]] = {k: [b for b in v if b in record["classes"]] for k, v in record["bases"].items()}
    order = sorted(record["classes"], key=lambda n: len(parents.get(n, [])))  # bases first (one level here)
    for name in order:
        attrs: dict[str, Any] = record["classes"][name]
        sim = SIMULATED[name]
        bases: tuple[type, ...] = tuple(classes[b] for b in parents.get(name, [])) or (_Guarded,)
        namespace: dict[str, Any] = {"_api": frozenset(attrs), "_api_class": name, "_generated": True, "_trt": trt}
        for attr, signatures in attrs.items():
            _add_member(namespace, (name, attr), signatures, sim, enums, version)
        cls = type(name, (*bases, sim), namespace)
        cls.__module__ = "tensorrt"
        classes[name] = cls
        setattr(trt, name, cls)

    def nptype(trt_type: Any) -> type:
        return NP_TYPES[trt.DataType(trt_type).name]

    if "nptype" in record["functions"]:
        checked = _checked("tensorrt", "nptype", lambda _module, trt_type: nptype(trt_type),
                           record["functions"]["nptype"], version)
        trt.nptype = functools.partial(checked, trt)  # type: ignore[attr-defined]
    return trt
