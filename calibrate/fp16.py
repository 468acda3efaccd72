"""FP16 conversion by ONNX Runtime's float16 converter, with FP32 graph I/O; this module picks and reports
the nodes that stay FP32 (kept op types, ops outside ``FP16_OPS``, weights or measured outputs that do
not fit FP16).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from bninception.core.errors import BninceptionError

if TYPE_CHECKING:
    import onnx

FP16_MAX = 65504.0
FP16_SMALLEST = 2.0 ** -24  # the smallest subnormal; anything below rounds to 0
FP16_HEADROOM = 0.5  # keep a node FP32 if its measured |output| exceeds this share of FP16_MAX
FP16_OPS = frozenset({
    "Conv", "ConvTranspose", "Gemm", "MatMul", "Relu", "LeakyRelu", "PRelu", "Sigmoid", "Tanh", "Clip",
    "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Concat", "Add", "Sub", "Mul",
    "Div", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Transpose", "Identity", "Dropout",
    "Softmax", "LogSoftmax", "BatchNormalization", "Pad", "Constant", "Slice", "Split", "Gather",
})
# None by default: every FP32 island costs two Casts, and the all-FP16 graph meets the gate (docs/decisions.md).
DEFAULT_KEEP_FP32_OPS: tuple[str, ...] = ()


@dataclass
class Fp16Report:
    converted_nodes: int = 0
    kept_nodes: list[str] = field(default_factory=list)
    kept_reasons: dict[str, str] = field(default_factory=dict)
    converted_initializers: int = 0
    out_of_range_weights: list[dict[str, Any]] = field(default_factory=list)
    underflow_weights: list[dict[str, Any]] = field(default_factory=list)
    casts: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def weight_range_report(name: str, array: np.ndarray) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(overflow entry, underflow entry) for one FP32 weight converted to FP16, or None."""
    magnitude = np.abs(array.astype(np.float64))
    over = int(np.sum(magnitude > FP16_MAX))
    under = int(np.sum((magnitude > 0) & (magnitude < FP16_SMALLEST / 2)))
    overflow = {"tensor": name, "count": over, "max_abs": float(magnitude.max())} if over else None
    underflow = ({"tensor": name, "count": under, "of": int(array.size)} if under else None)
    return overflow, underflow


def _op_reason(node: onnx.NodeProto, keep_fp32_ops: tuple[str, ...] | list[str],
               keep_fp32_nodes: tuple[str, ...] | list[str]) -> str:
    """Why the policy keeps ``node`` FP32 by its op or name ("" when it does not)."""
    if node.op_type in keep_fp32_ops:
        return f"op {node.op_type} kept FP32 (keep_fp32_ops)"
    if (node.name or node.output[0]) in keep_fp32_nodes:
        return "node kept FP32 (keep_fp32_nodes)"
    if node.domain not in ("", "ai.onnx") or node.op_type not in FP16_OPS:
        return f"op {node.op_type} not on the FP16-safe list"
    return ""


def _weight_reason(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto], reason: str, report: Fp16Report) -> str:
    """``reason``, or the weight of ``node`` that exceeds the FP16 range; the report notes weights out of
    range (and those that underflow in a converted node)."""
    from onnx import TensorProto, numpy_helper

    for name in node.input:
        if name not in inits or inits[name].data_type != TensorProto.FLOAT:
            continue
        overflow, underflow = weight_range_report(name, numpy_helper.to_array(inits[name]))
        if overflow:
            reason = reason or f"weight {name} exceeds the FP16 range"
            if overflow not in report.out_of_range_weights:
                report.out_of_range_weights.append(overflow)
        if underflow and not reason and underflow not in report.underflow_weights:
            report.underflow_weights.append(underflow)
    return reason


def _activation_reason(node: onnx.NodeProto, activation_amax: dict[str, float] | None) -> str:
    limit = FP16_HEADROOM * FP16_MAX
    for name in node.output:
        if activation_amax and activation_amax.get(name, 0.0) > limit:
            return f"output {name} reaches {activation_amax[name]:.4g} > {FP16_HEADROOM:g} x FP16 max"
    return ""


def fp16_policy(model: onnx.ModelProto, keep_fp32_ops: tuple[str, ...] | list[str] = DEFAULT_KEEP_FP32_OPS,
                keep_fp32_nodes: tuple[str, ...] | list[str] = (),
                activation_amax: dict[str, float] | None = None) -> Fp16Report:
    """Which nodes stay FP32, and why (op, name, weight range, measured activation range)."""
    report = Fp16Report()
    inits = {init.name: init for init in model.graph.initializer}
    for node in model.graph.node:
        reason = _op_reason(node, keep_fp32_ops, keep_fp32_nodes)
        reason = _weight_reason(node, inits, reason, report)
        reason = reason or _activation_reason(node, activation_amax)
        if reason:
            label = node.name or node.output[0]
            report.kept_nodes.append(label)
            report.kept_reasons[label] = reason
    return report


def _converted(model: onnx.ModelProto, report: Fp16Report) -> onnx.ModelProto:
    """ONNX Runtime's float16 converter on ``model``, the nodes ``report`` keeps blocked, FP32 I/O."""
    import onnx
    from onnxruntime.quantization.onnx_model import ONNXModel
    from onnxruntime.transformers.float16 import convert_float_to_float16

    named = onnx.ModelProto()
    named.CopyFrom(model)
    for index, node in enumerate(named.graph.node):  # the converter blocks nodes by name
        node.name = node.name or f"{node.op_type}_{index}__{node.output[0]}"
    blocked = [node.name for node, original in zip(named.graph.node, model.graph.node, strict=True)
               if (original.name or original.output[0]) in report.kept_reasons]
    try:
        half = convert_float_to_float16(named, keep_io_types=True, node_block_list=blocked, op_block_list=[])
        ONNXModel(half).topological_sort()  # the converter appends its input Casts last
        onnx.checker.check_model(half)
    except (onnx.checker.ValidationError, ValueError, KeyError) as exc:
        raise BninceptionError(f"FP16 conversion produced an invalid model: {exc}") from exc
    given_names = {node.name for node, original in zip(named.graph.node, model.graph.node, strict=True)
                   if not original.name}
    for each in half.graph.node:  # names the converter needed, taken back
        if each.name in given_names:
            each.name = ""
    return half


def convert_fp16(model: onnx.ModelProto, keep_fp32_ops: tuple[str, ...] | list[str] = DEFAULT_KEEP_FP32_OPS,
                 keep_fp32_nodes: tuple[str, ...] | list[str] = (),
                 activation_amax: dict[str, float] | None = None) -> tuple[onnx.ModelProto, Fp16Report]:
    """A copy of ``model`` in FP16 with FP32 I/O; ``activation_amax`` (measured FP32 max |output| per node)
    keeps a node FP32 above ``FP16_HEADROOM * FP16_MAX``.
    """
    from onnx import TensorProto

    report = fp16_policy(model, keep_fp32_ops, keep_fp32_nodes, activation_amax)
    half = _converted(model, report)
    report.converted_nodes = len(model.graph.node) - len(report.kept_nodes)
    casts = [sum(n.op_type == "Cast" for n in m.graph.node) for m in (half, model)]
    report.casts = casts[0] - casts[1]
    report.converted_initializers = sum(i.data_type == TensorProto.FLOAT16 for i in half.graph.initializer)
    return half, report
