"""ONNX Runtime session creation: provider choice, threads, graph optimization level."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from bninception.core.errors import BninceptionError
from bninception.core.runner import InputSpec

if TYPE_CHECKING:
    import onnxruntime as ort

PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")


def pick_providers(requested: list[str] | None = None) -> list[str]:
    """The requested providers (checked to be available), else the best available in order."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if requested:
        missing = [p for p in requested if p not in available]
        if missing:
            raise BninceptionError(f"ONNX Runtime providers not available here: {missing}; "
                                   f"available: {available}")
        return list(requested)
    return [p for p in PREFERRED_PROVIDERS if p in available] or ["CPUExecutionProvider"]


def create_session(model_path: str | os.PathLike[str], providers: list[str] | None = None,
                   optimization: str = "all", threads: int = 0,
                   spinning: bool | None = None) -> ort.InferenceSession:
    """An InferenceSession with a clear error for a missing or unreadable model file.

    ``spinning=False`` stops idle intra-op threads from busy-waiting (better for a server that
    shares its cores with the HTTP event loop); ``None`` keeps ONNX Runtime's default.
    """
    import onnxruntime as ort

    if optimization not in OPTIMIZATION_LEVELS:
        raise BninceptionError(f"graph optimization must be one of {OPTIMIZATION_LEVELS}, "
                               f"got {optimization!r}")
    if not os.path.isfile(model_path):
        raise BninceptionError(f"ONNX model {model_path} does not exist")
    options = ort.SessionOptions()
    options.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimization]
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3
    if spinning is not None:
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    try:
        return ort.InferenceSession(str(model_path), sess_options=options,
                                    providers=pick_providers(providers))
    except Exception as exc:  # onnxruntime raises several unrelated types
        raise BninceptionError(f"ONNX Runtime cannot load {model_path}: {exc}") from exc


def input_spec_of(session: ort.InferenceSession) -> InputSpec:
    """The image InputSpec of a session whose single input is ``(N, C, H, W)``."""
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise BninceptionError(f"expected a model with one input, found {[i.name for i in inputs]}")
    shape = inputs[0].shape
    if len(shape) != 4 or not all(isinstance(d, int) for d in shape[1:]):
        raise BninceptionError(f"input {inputs[0].name!r} must be (N, C, H, W) with fixed C, H, W; "
                               f"got {shape}")
    return InputSpec(name=inputs[0].name, channels=shape[1], height=shape[2], width=shape[3])
