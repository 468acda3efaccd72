"""The optimization profile for the dynamic batch axis, and the ONNX input it applies to."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

from bninception.core.errors import BninceptionError

MAX_BATCH_LIMIT = 4096  # bound what a flag may make TensorRT plan for


@dataclass(frozen=True)
class BatchProfile:
    """min <= opt <= max batch sizes of one optimization profile."""

    min: int = 1
    opt: int = 8
    max: int = 32

    def __post_init__(self) -> None:
        if not 1 <= self.min <= self.opt <= self.max:
            raise BninceptionError(f"batch profile needs 1 <= min <= opt <= max, got "
                                   f"min={self.min} opt={self.opt} max={self.max}")
        if self.max > MAX_BATCH_LIMIT:
            raise BninceptionError(f"max batch {self.max} is above the limit of {MAX_BATCH_LIMIT}")

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> BatchProfile:
        if not isinstance(data, dict) or set(data) != {"min", "opt", "max"}:
            raise BninceptionError(f"a batch profile is {{min, opt, max}}, got {data!r}")
        return cls(int(data["min"]), int(data["opt"]), int(data["max"]))

    def contains(self, batch: int) -> bool:
        return self.min <= batch <= self.max

    def describe(self) -> str:
        return f"{self.min}x{self.opt}x{self.max}"


@dataclass(frozen=True)
class OnnxInput:
    """The single image input of the model: name, element type and shape (None = dynamic)."""

    name: str
    elem_type: str
    shape: tuple[int | None, ...]


def profile_shapes(shape: tuple[int | None, ...], profile: BatchProfile,
                   name: str = "input") -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(min, opt, max) shapes of an NCHW input for ``IOptimizationProfile.set_shape``; only the batch may vary."""
    if len(shape) != 4:
        raise BninceptionError(f"input {name!r}: expected a 4-D NCHW input, got shape {shape}")
    batch, *rest = shape
    if any(d is None or d <= 0 for d in rest):
        raise BninceptionError(f"input {name!r}: only the batch axis may be dynamic, got shape {shape}")
    if batch is not None and not profile.min == profile.opt == profile.max == batch:
        raise BninceptionError(f"input {name!r} has a fixed batch of {batch}; the profile "
                               f"{profile.describe()} needs a dynamic batch axis (re-export the model)")
    fixed = tuple(int(d) for d in rest if d is not None)
    return (profile.min, *fixed), (profile.opt, *fixed), (profile.max, *fixed)


def read_graph_io(path: str | os.PathLike[str]) -> tuple[Any, list[Any], list[Any]]:
    """(model, graph inputs without initializers, graph outputs) of an ONNX file, external weights not loaded."""
    import onnx

    try:
        model = onnx.load(os.fspath(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError, OSError
        raise BninceptionError(f"{path} is not a readable ONNX model: {exc}") from exc
    initializers = {init.name for init in model.graph.initializer}
    return model, [i for i in model.graph.input if i.name not in initializers], list(model.graph.output)


def read_onnx_input(path: str | os.PathLike[str]) -> OnnxInput:
    """The single graph input of an ONNX file: name, element type, shape."""
    import onnx

    _, inputs, _ = read_graph_io(path)
    if len(inputs) != 1:
        raise BninceptionError(f"{path}: expected exactly one graph input, found "
                               f"{[i.name for i in inputs]}")
    tensor_type = inputs[0].type.tensor_type
    dims: list[int | None] = []
    for dim in tensor_type.shape.dim:
        dims.append(dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else None)
    elem = onnx.TensorProto.DataType.Name(tensor_type.elem_type)
    return OnnxInput(name=inputs[0].name, elem_type=elem, shape=tuple(dims))
