"""INT8 Q/DQ models written by ONNX Runtime's ``QDQQuantizer`` in the two layouts we ship, and the check
of any Q/DQ model against TensorRT's explicit-quantization rules.

- ``TENSORRT`` (``model.int8.onnx``): symmetric, per-channel weights, Q/DQ on each weighted op's input.
- ``CPU`` (``model.int8.cpu.onnx``): U8 activations and 7-bit S8 weights (``reduce_range``), the same
  logits on AVX2, AVX512-VNNI and AMX hosts (docs/decisions.md).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from bninception.calibrate.graph import (
    QDQ_OPSET_RANGE,
    WEIGHTED_OPS,
    WeightedOp,
    check_qdq_opset,
    initializers,
    weighted_ops,
)
from bninception.core.errors import BninceptionError
from bninception.export.graph import default_opset, get_attr

if TYPE_CHECKING:
    import onnx

Range = tuple[float, float]  # (lowest, highest) of a tensor


@dataclass(frozen=True)
class QdqLayout:
    """One option set of ONNX Runtime's QDQQuantizer."""

    name: str
    activation_signed: bool
    op_types: tuple[str, ...]
    extra_options: dict[str, Any] = field(default_factory=dict)
    weight_signed: bool = True
    reduce_range: bool = False  # 7-bit weights: no int16 saturation in U8S8 kernels without VNNI


TENSORRT = QdqLayout("tensorrt", True, WEIGHTED_OPS, {
    "ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False, "DedicatedQDQPair": True,
    "OpTypesToExcludeOutputQuantization": list(WEIGHTED_OPS), "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1},
})
CPU = QdqLayout("cpu", False, ("Conv", "Gemm", "MatMul", "Relu", "Clip", "MaxPool", "AveragePool",
                               "GlobalAveragePool", "Concat", "Add", "Mul", "Flatten", "Reshape", "Transpose",
                               "Squeeze", "Unsqueeze"), {"ActivationSymmetric": False, "WeightSymmetric": True},
                reduce_range=True)


def symmetric(amax: dict[str, float]) -> dict[str, Range]:
    """``[-amax, amax]`` per tensor, checked finite and non-negative."""
    ranges = {}
    for name, top in amax.items():
        if not np.isfinite(top) or top < 0:
            raise BninceptionError(f"calibration amax {top!r} of {name!r} is not a finite non-negative number")
        ranges[name] = (-float(top), float(top))
    return ranges


def cpu_ranges(max_abs: dict[str, float], minimum: dict[str, float]) -> dict[str, Range]:
    """The CPU layout's ranges from the observed max (docs/decisions.md): ``[0, max]`` for a tensor never
    negative, else ``[-max, max]``.
    """
    return {name: (0.0 if minimum.get(name, -1.0) >= 0 else -float(top), float(top))
            for name, (_, top) in symmetric(max_abs).items()}


def chained_ops(model: onnx.ModelProto) -> list[str]:
    """Weighted ops fed straight by another weighted op (left in float in the TensorRT layout)."""
    ops = weighted_ops(model)
    outputs = {name for op in ops for name in op.node.output}
    return [op.node.name for op in ops if op.activation in outputs]


def edge_ops(model: onnx.ModelProto) -> list[str]:
    """The first and the last weighted op (the stem convolution and the classifier): the layers whose
    quantization error nothing averages out, which quantization toolkits commonly keep in higher precision."""
    ops = weighted_ops(model)
    return list(dict.fromkeys([ops[0].node.name, ops[-1].node.name])) if ops else []


def quantize(model: onnx.ModelProto, ranges: dict[str, Range], layout: QdqLayout,
             keep_float: list[str] | tuple[str, ...] = ()) -> onnx.ModelProto:
    """A Q/DQ copy of ``model`` in ``layout``, with the activation ``ranges`` of a calibration; the weighted
    ops named in ``keep_float`` stay in float."""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
    from onnxruntime.quantization.quant_utils import save_and_reload_model_with_shape_infer

    check_qdq_opset(model, f"INT8 quantization ({layout.name} layout)")
    unnamed = [n.op_type for n in model.graph.node if not n.name]
    if unnamed:
        raise BninceptionError(f"INT8 quantization needs named nodes; {len(unnamed)} are unnamed "
                               f"(e.g. a {unnamed[0]})")
    excluded = list(dict.fromkeys([*(chained_ops(model) if layout is TENSORRT else []), *keep_float]))
    needed = {op.activation for op in weighted_ops(model) if op.node.name not in excluded}
    missing = sorted(needed - set(ranges))
    if missing:
        raise BninceptionError(f"no calibration range for {len(missing)} activation tensor(s), e.g. "
                               f"{missing[0]!r}: the calibration does not match this model")
    data = {name: TensorData(lowest=np.float32(low), highest=np.float32(high)) for name, (low, high) in ranges.items()}
    try:
        quantizer = QDQQuantizer(
            model=save_and_reload_model_with_shape_infer(model), per_channel=True, reduce_range=layout.reduce_range,
            weight_qType=QuantType.QInt8 if layout.weight_signed else QuantType.QUInt8,
            activation_qType=QuantType.QInt8 if layout.activation_signed else QuantType.QUInt8,
            tensors_range=TensorsData(CalibrationMethod.MinMax, data), nodes_to_quantize=[],
            nodes_to_exclude=excluded, op_types_to_quantize=list(layout.op_types),
            extra_options=dict(layout.extra_options))
        quantizer.quantize_model()
        quantizer.model.topological_sort()
    except Exception as exc:  # the quantizer raises assorted types
        raise BninceptionError(f"INT8 quantization ({layout.name} layout) failed: {exc}") from exc
    result: onnx.ModelProto = quantizer.model.model
    del result.graph.value_info[:]
    return result


def qdq_summary(model: onnx.ModelProto) -> dict[str, Any]:
    """Counts for the stage report: Q and DQ nodes, quantized and float weighted ops."""
    ops = Counter(n.op_type for n in model.graph.node)
    producers = {out: n.op_type for n in model.graph.node for out in n.output}
    weighted = [n for n in model.graph.node if n.op_type in WEIGHTED_OPS]
    quantized = sum(producers.get(n.input[0]) == "DequantizeLinear" for n in weighted)
    return {"quantize_linear": ops["QuantizeLinear"], "dequantize_linear": ops["DequantizeLinear"],
            "weighted_ops": len(weighted), "quantized_ops": quantized, "float_ops": len(weighted) - quantized}


# TensorRT developer guide, "Working with Quantized Types" > "Explicit Quantization" (10.x and 11.x):
TRT_DOC = "https://docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/quantized-types-explicit-quantization.html"
SCHEME = f"{TRT_DOC} (Quantization scheme: INT8 is symmetric, zero point 0)"
PER_TENSOR = f"{TRT_DOC} (Q/DQ layers: activations are quantized per tensor; per-channel only on weights)"
WEIGHT_AXIS = f"{TRT_DOC} (Quantized weights: per-channel scales run along the output-channel axis)"
WEIGHTS = f"{TRT_DOC} (Quantized weights: INT8 initializer, or a float initializer through Q -> DQ)"
CONSTANT = f"{TRT_DOC} (Q/DQ layers: scale and zero point are build-time constants)"
PLACEMENT = f"{TRT_DOC} (Q/DQ layer-placement recommendations)"
OPSET = "https://onnx.ai/onnx/operators/onnx__DequantizeLinear.html (per-axis scales need opset 13)"


@dataclass(frozen=True)
class Finding:
    """One result of :func:`check_trt_layout`: an error TensorRT refuses or miscomputes, or placement advice."""

    node: str
    message: str
    rule: str
    error: bool

    def __str__(self) -> str:
        return f"{self.node}: {self.message}"


@dataclass(frozen=True)
class LayoutCheck:
    findings: tuple[Finding, ...]

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.error]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if not f.error]

    def to_dict(self) -> dict[str, Any]:
        return {"errors": [str(f) for f in self.errors], "warnings": [str(f) for f in self.warnings]}


def _array(init: onnx.TensorProto | None) -> np.ndarray | None:
    from onnx import numpy_helper

    return None if init is None else numpy_helper.to_array(init)


def check_trt_layout(model: onnx.ModelProto) -> LayoutCheck:
    """``model`` against TensorRT's explicit-quantization rules: errors are what TensorRT refuses or
    computes differently; warnings are placement advice (a weighted op left in float, a Q right
    after a weighted op, a shared pair). FP32 weight -> Q -> DQ (ModelOpt, QAT exports) is accepted."""
    found: list[Finding] = []

    def add(node: str, message: str, rule: str, error: bool = True) -> None:
        found.append(Finding(node, message, rule, error))

    graph = model.graph
    inits = initializers(model)
    producers = {out: node for node in graph.node for out in node.output}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    if default_opset(model) < QDQ_OPSET_RANGE[0]:
        add("model", f"opset {default_opset(model)} < {QDQ_OPSET_RANGE[0]}", OPSET)
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            _check_qdq(node, inits, add)
    for op in weighted_ops(model, producers):
        _check_weighted_op(op, producers, readers, inits, add)
    return LayoutCheck(tuple(found))


def _check_qdq(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto], add: Any) -> None:
    """A Q or DQ node: a constant INT8 zero point of 0, a constant finite positive scale."""
    from onnx import TensorProto

    if len(node.input) < 3 or node.input[2] not in inits:
        add(node.name, "no constant zero point", CONSTANT)
    else:
        zp = inits[node.input[2]]
        if zp.data_type != TensorProto.INT8:
            add(node.name, f"zero point is {TensorProto.DataType.Name(zp.data_type)}, not INT8", SCHEME)
        elif np.any(_array(zp) != 0):
            add(node.name, "non-zero zero point", SCHEME)
    scale = _array(inits.get(node.input[1]))
    if scale is None:
        add(node.name, "scale is not a constant initializer", CONSTANT)
    elif not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        add(node.name, "scale is not finite and positive", SCHEME)


def _check_weighted_op(op: WeightedOp, producers: dict[str, onnx.NodeProto],
                       readers: dict[str, list[onnx.NodeProto]], inits: dict[str, onnx.TensorProto],
                       add: Any) -> None:
    """A Conv/Gemm/MatMul: its activation read through one per-tensor DQ of its own, its weight, a constant
    bias, and no Q right after it."""
    node = op.node
    act = producers.get(op.activation)
    float_weight = producers.get(node.input[1]) is None
    if act is None or act.op_type != "DequantizeLinear" or float_weight:
        add(node.name, f"{node.op_type} runs in float: its {'weight' if float_weight else 'input'} is not read "
            "through DequantizeLinear", PLACEMENT, error=False)
    else:
        scale = _array(inits.get(act.input[1]))
        if scale is not None and scale.size != 1:
            add(node.name, f"activation scale has {scale.size} values, not one", PER_TENSOR)
        if len(readers.get(act.output[0], [])) > 1:
            add(node.name, "activation DequantizeLinear is shared with other readers", PLACEMENT, error=False)
    _check_weight(op, producers, inits, add)
    if len(node.input) > 2 and node.input[2] and node.input[2] not in inits:
        add(node.name, "bias is not a constant initializer", CONSTANT)
    if any(r.op_type == "QuantizeLinear" for r in readers.get(node.output[0], [])):
        add(node.name, "output goes straight into QuantizeLinear (no fusion with what follows)", PLACEMENT,
            error=False)


def _check_weight(op: WeightedOp, producers: dict[str, onnx.NodeProto], inits: dict[str, onnx.TensorProto],
                  add: Any) -> None:
    """The weight of a weighted op: an INT8 initializer or a float one through Q, read through a DQ
    whose per-channel scales (if any) run along the output-channel axis."""
    from onnx import TensorProto

    node = op.node
    dq = producers.get(node.input[1])
    if dq is None or dq.op_type != "DequantizeLinear":
        return  # a float weight: the op runs in float (a warning above)
    weight = inits[op.weight]  # weighted_ops walked the DQ (and a Q before it) back to the initializer
    if dq.input[0] != op.weight:  # through QuantizeLinear
        if weight.data_type not in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16):
            add(node.name, "weight QuantizeLinear does not read a float initializer", WEIGHTS)
            return
    elif weight.data_type != TensorProto.INT8:
        add(node.name, "weight is neither an INT8 initializer nor a float one through QuantizeLinear", WEIGHTS)
        return
    scale = _array(inits.get(dq.input[1]))
    if scale is None or scale.size == 1:
        return
    rank = len(weight.dims)
    dq_axis = get_attr(dq, "axis", 1)
    dq_axis = dq_axis + rank if dq_axis < 0 else dq_axis
    if dq_axis != op.axis:
        add(node.name, f"weight scales run along axis {dq_axis}, not the output-channel axis {op.axis}", WEIGHT_AXIS)
    elif scale.size != weight.dims[op.axis]:
        add(node.name, f"{scale.size} weight scales for {weight.dims[op.axis]} output channels", WEIGHT_AXIS)
