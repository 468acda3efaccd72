"""The one ONNX Runtime session factory, and execution providers under the names users know.

Exactly one ONNX Runtime build may be installed (the ``[cpu]``, ``[gpu]`` or ``[openvino]`` extra).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

from bninception.core.errors import BninceptionError

if TYPE_CHECKING:
    import onnx
    import onnxruntime as ort

PROVIDERS = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
FASTEST_FIRST = ("tensorrt", "cuda", "openvino", "cpu")
DISTRIBUTIONS = {"onnxruntime": "cpu", "onnxruntime-gpu": "gpu", "onnxruntime-openvino": "openvino"}
OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")
# OpenVINO: the CPU device, FP32 precision for every model (docs/decisions.md, "OpenVINO precision")
OPENVINO_DEVICE = "CPU"
OPENVINO_CONFIG = {"INFERENCE_PRECISION_HINT": "f32"}
INSTALL_HINT = ("install exactly one ONNX Runtime build: pip install 'bninception[cpu]' (CPU), "
                "'bninception[gpu]' (CUDA + TensorRT) or 'bninception[openvino]' (Intel CPUs/GPUs)")


def installed_builds() -> list[str]:
    """The ONNX Runtime distributions installed (more than one means a broken install)."""
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for dist in DISTRIBUTIONS:
        try:
            version(dist)
        except PackageNotFoundError:
            continue
        found.append(dist)
    return found


def onnxruntime() -> ModuleType:
    """The ``onnxruntime`` module, or a clear error saying which extra to install."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise BninceptionError(f"ONNX Runtime is not installed ({exc}); {INSTALL_HINT}") from None
    builds = installed_builds()
    if len(builds) > 1:
        raise BninceptionError(f"several ONNX Runtime builds are installed ({', '.join(builds)}); they "
                               f"overwrite each other's files and hide providers: uninstall all of them, "
                               f"then {INSTALL_HINT.split(': ', 1)[1]}")
    return ort


def available() -> list[str]:
    """The providers of this ONNX Runtime build, by user name, fastest first."""
    present = set(onnxruntime().get_available_providers())
    return [name for name in FASTEST_FIRST if PROVIDERS[name] in present]


def onnx_providers() -> list[str]:
    """The providers that run plain ONNX files here, fastest first (TensorRT runs our plans instead)."""
    return [name for name in available() if name != "tensorrt"]


def provider_name(name: str) -> str:
    """``cuda`` -> ``CUDAExecutionProvider`` (ONNX Runtime's own names pass through)."""
    if name in PROVIDERS.values():
        return name
    try:
        return PROVIDERS[name.strip().lower()]
    except KeyError:
        raise BninceptionError(f"unknown execution provider {name!r}; choose from "
                               f"{', '.join(PROVIDERS)}") from None


def user_name(provider: str) -> str:
    """``CUDAExecutionProvider`` -> ``cuda``."""
    for name, full in PROVIDERS.items():
        if full == provider:
            return name
    return provider


def parse_providers(text: str | Sequence[str] | None) -> list[str] | None:
    """``"cpu,openvino"`` (a ``--providers`` value) -> user names, each checked to exist in this build;
    None or empty -> None (the caller's default: every available provider, or the fastest)."""
    parts = text.split(",") if isinstance(text, str) else list(text or [])
    names = list(dict.fromkeys(user_name(provider_name(p)) for p in parts if p.strip()))
    if not names:
        return None
    resolve(names)
    return names


def resolve(requested: Sequence[str] | None) -> list[str]:
    """ONNX Runtime provider names for ``requested`` (default CPU), checked to exist, CPU behind any other."""
    names = [provider_name(p) for p in (requested or ["cpu"])]
    here = onnxruntime().get_available_providers()
    missing = [n for n in names if n not in here]
    if missing:
        extra = {"TensorrtExecutionProvider": "gpu", "CUDAExecutionProvider": "gpu",
                 "OpenVINOExecutionProvider": "openvino"}.get(missing[0], "cpu")
        raise BninceptionError(f"execution provider {user_name(missing[0])} is not available in this ONNX "
                               f"Runtime build (available: {', '.join(map(user_name, here))}); it needs "
                               f"pip install 'bninception[{extra}]' on a host that supports it")
    if PROVIDERS["cpu"] not in names:
        names.append(PROVIDERS["cpu"])
    return names


def default_options(provider: str, threads: int = 0) -> dict[str, str]:
    """The options ``provider`` gets unless the caller passes its own: OpenVINO on the CPU in FP32 with
    ``threads``; CUDA with TF32 off (the FP32 gate).
    """
    if provider_name(provider) == PROVIDERS["cuda"]:
        return {"use_tf32": "0"}
    if provider_name(provider) != PROVIDERS["openvino"]:
        return {}
    config: dict[str, str] = dict(OPENVINO_CONFIG)
    if threads:
        config["INFERENCE_NUM_THREADS"] = str(int(threads))
    return {"device_type": OPENVINO_DEVICE, "load_config": json.dumps({OPENVINO_DEVICE: config})}


def _error_line(exc: BaseException) -> str:
    """The informative part of an ONNX Runtime error: its first line, plus the last one when they differ
    (OpenVINO puts the cause, e.g. the node it cannot convert, at the end of a long trace)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    first = lines[0] if len(lines[0]) <= 300 else lines[0][:300] + " ..."
    cause = next((line for line in reversed(lines[1:]) if not line.startswith(("Summary", "--"))), None)
    nodes = [line for line in lines[1:] if line.startswith("While validating ONNX node")][:1]
    return " ".join([first, *nodes, *([cause] if cause and cause not in nodes else [])])


def create_session(model: str | os.PathLike[str] | bytes | onnx.ModelProto, *,
                   providers: Sequence[str] | None = None, optimization: str = "all", threads: int = 0,
                   spinning: bool | None = None,
                   provider_options: Mapping[str, Mapping[str, Any]] | None = None,
                   what: str | None = None) -> ort.InferenceSession:
    """An InferenceSession on a path, bytes or ModelProto, with a clear error.

    ``optimization="disable"`` for parity checks, ``"all"`` for serving; ``threads`` for ONNX Runtime and
    OpenVINO; ``spinning=False`` stops idle threads busy-waiting; ``provider_options`` replace the defaults.
    """
    ort = onnxruntime()
    if optimization not in OPTIMIZATION_LEVELS:
        raise BninceptionError(f"graph optimization must be one of {OPTIMIZATION_LEVELS}, got {optimization!r}")
    source: Any = model
    if hasattr(model, "SerializeToString"):
        source = model.SerializeToString()  # type: ignore[union-attr]
    elif isinstance(model, (str, os.PathLike)):
        source = os.fspath(model)
        if not os.path.isfile(source):
            raise BninceptionError(f"ONNX model {source} does not exist")
    label = what or (source if isinstance(source, str) else "the model")
    options = ort.SessionOptions()
    options.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimization]
    if threads:
        options.intra_op_num_threads = int(threads)
    options.log_severity_level = 3
    if spinning is not None:
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    names = resolve(providers)
    given = {provider_name(k): {str(o): str(v) for o, v in dict(opts).items()}
             for k, opts in (provider_options or {}).items()}
    chosen = [given[n] if n in given else default_options(n, threads) for n in names]
    try:
        return ort.InferenceSession(source, sess_options=options, providers=names, provider_options=chosen)
    except Exception as exc:  # onnxruntime raises several unrelated types
        raise BninceptionError(f"ONNX Runtime cannot load {label} on "
                               f"{', '.join(map(user_name, names))}: {_error_line(exc)}") from exc
