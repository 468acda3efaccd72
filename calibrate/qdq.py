"""Explicit INT8 quantization: QuantizeLinear/DequantizeLinear insertion in the layout TensorRT accepts.

Rules (checked again by ``check_trt_layout``):
- symmetric INT8 everywhere: every zero point is an int8 0;
- weights: int8 initializers with per-channel scales ``amax_c / 127`` along the output axis
  (Conv axis 0, Gemm/MatMul the output axis), read through a DequantizeLinear;
- activations: one per-tensor ``QuantizeLinear`` (scale ``amax / 127``) on the input of every
  Conv / Gemm / MatMul, a dedicated ``DequantizeLinear`` per consumer; other consumers of the same
  tensor (pools, Concat) keep reading the float tensor;
- bias stays FP32 (no int32 bias quantization); no Q/DQ on the outputs of weighted ops: a
  weighted op fed directly by another (no activation between) is left in float, as those two
  rules cannot both hold for it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from bninception.calibrate.graph import QDQ_OPSET_RANGE, check_qdq_opset, initializers, weighted_ops
from bninception.core.errors import BninceptionError

if TYPE_CHECKING:
    import onnx

QMAX = 127.0
MIN_AMAX = 1e-8  # an all-zero tensor or channel still needs a positive scale


@dataclass
class QdqReport:
    weighted_ops: int = 0
    activations: int = 0
    weights: int = 0
    zero_channels: int = 0
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def quantize_weight(weight: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Symmetric per-channel int8: ``(q, scale, zero_channels)`` with ``weight ~ q * scale``."""
    w = np.asarray(weight, dtype=np.float32)
    moved = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    amax = np.abs(moved).max(axis=1) if moved.size else np.zeros(w.shape[axis], np.float32)
    zero = int(np.sum(amax <= 0))
    scale = (np.maximum(amax, MIN_AMAX) / QMAX).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.rint(w / scale.reshape(shape)), -QMAX, QMAX).astype(np.int8)
    return q, scale, zero


def activation_scale(amax: float) -> np.float32:
    if not np.isfinite(amax) or amax < 0:
        raise BninceptionError(f"calibration amax {amax!r} is not a finite non-negative number")
    return np.float32(max(float(amax), MIN_AMAX) / QMAX)


def insert_qdq(model: onnx.ModelProto, amax: dict[str, float]) -> tuple[onnx.ModelProto, QdqReport]:
    """A copy of ``model`` with Q/DQ on every weighted op; ``amax``: activation tensor -> range."""
    import onnx
    from onnx import helper, numpy_helper

    check_qdq_opset(model, "INT8 quantization")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    inits = initializers(out)
    ops = weighted_ops(out)
    report = QdqReport(weighted_ops=len(ops))
    outputs_of_weighted = {name for op in ops for name in op.node.output}
    chained = [op for op in ops if op.activation in outputs_of_weighted]
    # a weighted op fed straight by another: quantizing its input would put a Q right after a
    # weighted op (against TensorRT's rule), so it stays in float (none in BN-Inception)
    report.skipped = [op.node.name or op.node.output[0] for op in chained]
    ops = [op for op in ops if op not in chained]
    missing = sorted({op.activation for op in ops} - set(amax))
    if missing:
        raise BninceptionError(f"no calibration range for {len(missing)} activation tensor(s), "
                               f"e.g. {missing[0]!r}: the calibration does not match this model")
    zero_i8 = "qdq_zero_point_i8"
    graph.initializer.append(numpy_helper.from_array(np.zeros((), np.int8), zero_i8))
    new_inits: list[onnx.TensorProto] = []
    removed_weights: set[str] = set()
    quantized: dict[str, str] = {}  # activation -> its QuantizeLinear output
    before: dict[int, list[onnx.NodeProto]] = {}  # node position -> nodes to insert before it
    weight_dq: dict[tuple[str, int], str] = {}
    positions = {id(node): i for i, node in enumerate(graph.node)}
    for op in ops:
        pos = positions[id(op.node)]
        inserted = before.setdefault(pos, [])
        base = op.node.name or op.node.output[0]
        # activation: one Q per tensor, one DQ per consumer
        if op.activation not in quantized:
            scale_name = f"{op.activation}_act_scale"
            new_inits.append(numpy_helper.from_array(np.asarray(activation_scale(amax[op.activation])),
                                                     scale_name))
            q_out = f"{op.activation}_quantized"
            first = min(positions[id(o.node)] for o in ops if o.activation == op.activation)
            before.setdefault(first, []).insert(0, helper.make_node(
                "QuantizeLinear", [op.activation, scale_name, zero_i8], [q_out],
                name=f"{op.activation}_QuantizeLinear"))
            quantized[op.activation] = q_out
            report.activations += 1
        dq_out = f"{base}_input_dequantized"
        inserted.append(helper.make_node(
            "DequantizeLinear", [quantized[op.activation], f"{op.activation}_act_scale", zero_i8], [dq_out],
            name=f"{base}_input_DequantizeLinear"))
        op.node.input[0] = dq_out
        # weight: int8 initializer + per-channel DequantizeLinear (shared by every reader)
        key = (op.weight, op.axis)
        if key not in weight_dq:
            w = numpy_helper.to_array(inits[op.weight])
            if w.dtype != np.float32:
                raise BninceptionError(f"weight {op.weight!r} of {op.node.op_type} {base!r} is {w.dtype}, "
                                       "expected float32 (quantize the FP32 folded model)")
            q, scale, zero = quantize_weight(w, op.axis)
            report.zero_channels += zero
            q_name, s_name, z_name = f"{op.weight}_quantized", f"{op.weight}_scale", f"{op.weight}_zero_point"
            new_inits += [numpy_helper.from_array(q, q_name), numpy_helper.from_array(scale, s_name),
                          numpy_helper.from_array(np.zeros(scale.shape, np.int8), z_name)]
            w_out = f"{op.weight}_dequantized"
            inserted.append(helper.make_node("DequantizeLinear", [q_name, s_name, z_name], [w_out],
                                             name=f"{op.weight}_DequantizeLinear", axis=op.axis))
            weight_dq[key] = w_out
            removed_weights.add(op.weight)
            report.weights += 1
        op.node.input[1] = weight_dq[key]
    # weights read by anything else (none in a classifier) stay as float initializers
    still_read = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name not in removed_weights or init.name in still_read]
    del graph.initializer[:]
    graph.initializer.extend(kept + new_inits)
    nodes = list(graph.node)
    del graph.node[:]
    for i, node in enumerate(nodes):
        graph.node.extend(before.get(i, []))
        graph.node.append(node)
    del graph.value_info[:]
    return out, report


def check_trt_layout(model: onnx.ModelProto) -> list[str]:
    """Every violation of the TensorRT explicit-quantization rules (empty list: the layout is good)."""
    from onnx import TensorProto, numpy_helper

    problems: list[str] = []
    graph = model.graph
    inits = initializers(model)
    producers = {out: node for node in graph.node for out in node.output}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    low, high = QDQ_OPSET_RANGE
    from bninception.calibrate.graph import onnx_opset

    opset = onnx_opset(model)
    if not low <= opset <= high:
        problems.append(f"opset {opset} outside {low}..{high}")
    for node in graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if len(node.input) < 3 or node.input[2] not in inits:
            problems.append(f"{node.name}: no constant zero point")
            continue
        zp = inits[node.input[2]]
        if zp.data_type != TensorProto.INT8:
            problems.append(f"{node.name}: zero point is {TensorProto.DataType.Name(zp.data_type)}, not INT8")
        if np.any(numpy_helper.to_array(zp) != 0):
            problems.append(f"{node.name}: non-zero zero point")
        scale = inits.get(node.input[1])
        if scale is None or np.any(numpy_helper.to_array(scale) <= 0):
            problems.append(f"{node.name}: scale missing or not positive")
    for node in graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        act = producers.get(node.input[0])
        if act is not None and act.op_type in ("Conv", "Gemm", "MatMul"):
            continue  # fed straight by a weighted op: left in float on purpose (see insert_qdq)
        if act is None or act.op_type != "DequantizeLinear":
            problems.append(f"{node.name}: input is not read through DequantizeLinear")
        else:
            scale = inits.get(act.input[1])
            if scale is None or numpy_helper.to_array(scale).size != 1:
                problems.append(f"{node.name}: activation scale is not per-tensor")
            q = producers.get(act.input[0])
            if q is None or q.op_type != "QuantizeLinear":
                problems.append(f"{node.name}: activation DequantizeLinear is not fed by QuantizeLinear")
        wdq = producers.get(node.input[1])
        if wdq is None or wdq.op_type != "DequantizeLinear":
            problems.append(f"{node.name}: weight is not read through DequantizeLinear")
        else:
            weight = inits.get(wdq.input[0])
            scale = inits.get(wdq.input[1])
            axis = next((a.i for a in wdq.attribute if a.name == "axis"), 1)
            if weight is None or weight.data_type != TensorProto.INT8:
                problems.append(f"{node.name}: weight is not an INT8 initializer")
            elif scale is None or numpy_helper.to_array(scale).ndim != 1:
                problems.append(f"{node.name}: weight scale is not per-channel")
            else:
                expected = 0 if node.op_type == "Conv" else None
                if node.op_type == "Gemm":
                    trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
                    expected = 0 if trans_b else 1
                elif node.op_type == "MatMul":
                    expected = len(weight.dims) - 1
                if axis != expected:
                    problems.append(f"{node.name}: weight scale axis {axis}, expected {expected}")
                elif numpy_helper.to_array(scale).size != weight.dims[axis]:
                    problems.append(f"{node.name}: {numpy_helper.to_array(scale).size} scales for "
                                    f"{weight.dims[axis]} output channels")
        if len(node.input) > 2 and node.input[2]:
            bias = inits.get(node.input[2])
            if bias is None or bias.data_type != TensorProto.FLOAT:
                problems.append(f"{node.name}: bias is not an FP32 initializer")
        for reader in readers.get(node.output[0], []):
            if reader.op_type in ("QuantizeLinear", "DequantizeLinear"):
                problems.append(f"{node.name}: output goes straight into {reader.op_type}")
    return problems
