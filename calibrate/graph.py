"""The weighted ops the INT8 passes quantize, and the opset range in which Q/DQ is defined."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bninception.core.errors import BninceptionError
from bninception.export.graph import DEFAULT_DOMAINS, default_opset, get_attr

if TYPE_CHECKING:
    import onnx

WEIGHTED_OPS = ("Conv", "Gemm", "MatMul")
QDQ_OPSET_RANGE = (13, 20)  # per-axis DequantizeLinear needs 13; TensorRT's Q/DQ rules are for <= 20


def initializers(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    return {init.name: init for init in model.graph.initializer}


@dataclass(frozen=True)
class WeightedOp:
    """A Conv / Gemm / MatMul with a constant weight: its activation input, weight and output axis."""

    node: onnx.NodeProto
    activation: str
    weight: str
    axis: int  # the weight's output-channel axis (per-channel scales run along it)


def weighted_ops(model: onnx.ModelProto, producers: Mapping[str, onnx.NodeProto] | None = None
                 ) -> list[WeightedOp]:
    """Every Conv / Gemm / MatMul whose weight is an initializer (also through DequantizeLinear, or
    QuantizeLinear -> DequantizeLinear), with the weight's output-channel axis.
    """
    inits = initializers(model)
    producers = producers or {}
    found = []
    for node in model.graph.node:
        if node.op_type not in WEIGHTED_OPS or node.domain not in DEFAULT_DOMAINS or len(node.input) < 2:
            continue
        source = node.input[1]
        for op_type in ("DequantizeLinear", "QuantizeLinear"):
            step = producers.get(source)
            if step is not None and step.op_type == op_type:
                source = step.input[0]
        weight = inits.get(source)
        if weight is None:
            continue
        rank = len(weight.dims)
        if node.op_type == "Conv":
            axis = 0
        elif node.op_type == "Gemm":
            if get_attr(node, "transA", 0):
                continue  # a transposed activation: not a classifier layer; left in float
            axis = 0 if get_attr(node, "transB", 0) else 1
        else:
            if rank < 2:
                continue
            axis = rank - 1
        found.append(WeightedOp(node=node, activation=node.input[0], weight=source, axis=axis))
    return found


def check_qdq_opset(model: onnx.ModelProto, what: str) -> int:
    opset = default_opset(model)
    low, high = QDQ_OPSET_RANGE
    if not low <= opset <= high:
        raise BninceptionError(f"{what}: opset {opset} is outside {low}..{high}, the range in which "
                               "per-channel Q/DQ is defined and TensorRT accepts it; re-export with "
                               "`bninception export --opset 17`")
    return opset
