"""What the server knows about a model: I/O names and shapes, labels, recorded preprocessing.

Read from the ONNX session and the ``metadata_props`` the export stage writes
(``bninception.preprocess``, ``bninception.labels``, ``bninception.model_config``,
``bninception.source_sha256``). Every key is optional: without labels the classes are their
indices; without preprocessing ``/v1/classify`` is unavailable.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bninception.core.errors import BninceptionError
from bninception.core.runner import InputSpec
from bninception.serve.session import input_spec_of

if TYPE_CHECKING:
    import onnxruntime as ort

    from bninception.core.preprocess import Preprocess

log = logging.getLogger(__name__)

META_PREPROCESS = "bninception.preprocess"
META_LABELS = "bninception.labels"
META_CONFIG = "bninception.model_config"
META_SOURCE = "bninception.source_sha256"

# precision -> (file in the run directory, command that makes it)
PRECISION_FILES: dict[str, tuple[str, str]] = {
    "fp32": ("model.folded.onnx", "bninception fold --run {run}"),
    "fp16": ("model.fp16.onnx", "bninception calibrate --run {run} --precision fp16"),
    "int8": ("model.int8.onnx", "bninception calibrate --run {run} --precision int8"),
}

# ONNX Runtime type string -> (KServe V2 datatype, numpy dtype name)
ORT_TYPES = {"tensor(float)": ("FP32", "float32"), "tensor(float16)": ("FP16", "float16"),
             "tensor(double)": ("FP64", "float64")}


INT8_CPU_FILE = "model.int8.cpu.onnx"  # ONNX Runtime CPU layout (QLinear kernels), made beside model.int8.onnx


def model_path_for(run: str | os.PathLike[str], precision: str, cpu_only: bool = False) -> Path:
    """The ONNX file serving ``precision`` in run directory ``run``, or a clear error.

    With ``cpu_only`` INT8 prefers the CPU layout when the run has it: the TensorRT Q/DQ layout
    (no Q after a Conv) cannot fuse into ONNX Runtime's integer kernels and runs slower than FP32.
    """
    if precision not in PRECISION_FILES:
        raise BninceptionError(f"precision must be one of {sorted(PRECISION_FILES)}, got {precision!r}")
    name, command = PRECISION_FILES[precision]
    root = Path(run)
    if not root.is_dir():
        raise BninceptionError(f"run directory {root} does not exist")
    path = root / name
    if precision == "int8" and cpu_only and (root / INT8_CPU_FILE).is_file():
        return root / INT8_CPU_FILE
    if not path.is_file():
        raise BninceptionError(f"{path} is missing (the {precision} model; make it with: "
                               f"{command.format(run=run)})")
    return path


@dataclass(frozen=True)
class ModelInfo:
    """The served model's interface and the metadata recorded at export."""

    path: Path
    input: InputSpec
    input_dtype: str  # numpy dtype the session takes ("float32", or "float16" for pure FP16 I/O)
    output: str
    num_classes: int
    labels: list[str]
    preprocess: Preprocess | None
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def item_shape(self) -> tuple[int, int, int]:
        return (self.input.channels, self.input.height, self.input.width)


def _labels(raw: str | None, num_classes: int, path: Path) -> list[str]:
    if raw is None:
        return [str(i) for i in range(num_classes)]
    try:
        labels = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BninceptionError(f"{path}: metadata {META_LABELS} is not JSON: {exc}") from exc
    if not isinstance(labels, list) or len(labels) != num_classes:
        found = f"{len(labels)} entries" if isinstance(labels, list) else type(labels).__name__
        raise BninceptionError(f"{path}: metadata {META_LABELS} must list {num_classes} class names, "
                               f"got {found}")
    return [str(label) for label in labels]


def _preprocess(raw: str | None, spec: InputSpec, path: Path) -> Preprocess | None:
    if raw is None:
        return None
    from bninception.core.preprocess import Preprocess

    try:
        data: Any = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BninceptionError(f"{path}: metadata {META_PREPROCESS} is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BninceptionError(f"{path}: metadata {META_PREPROCESS} must be a JSON object")
    pre = Preprocess.from_dict(data)
    if (pre.channels, pre.size, pre.size) != (spec.channels, spec.height, spec.width):
        raise BninceptionError(
            f"{path}: recorded preprocessing makes {pre.channels}x{pre.size}x{pre.size} images but input "
            f"{spec.name!r} takes {spec.channels}x{spec.height}x{spec.width}")
    return pre


def read_model_info(session: ort.InferenceSession, path: str | os.PathLike[str]) -> ModelInfo:
    """Interface + metadata of a classifier session (one NCHW input, first output = logits)."""
    path = Path(path)
    spec = input_spec_of(session)
    input_type = session.get_inputs()[0].type
    if input_type not in ORT_TYPES:
        raise BninceptionError(f"{path}: input {spec.name!r} has type {input_type}; expected a float tensor")
    output = session.get_outputs()[0]
    if len(output.shape) != 2 or not isinstance(output.shape[1], int):
        raise BninceptionError(f"{path}: output {output.name!r} must be (N, classes), got {output.shape}")
    num_classes = int(output.shape[1])
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    labels = _labels(metadata.get(META_LABELS), num_classes, path)
    preprocess = _preprocess(metadata.get(META_PREPROCESS), spec, path)
    if preprocess is None:
        log.warning("%s records no preprocessing (%s): /v1/classify is disabled", path, META_PREPROCESS)
    return ModelInfo(path=path, input=spec, input_dtype=ORT_TYPES[input_type][1], output=output.name,
                     num_classes=num_classes, labels=labels, preprocess=preprocess, metadata=metadata)
