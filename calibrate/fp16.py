"""FP16 conversion: FP16 weights and activations, FP32 graph input/output through boundary Casts.

Nodes stay FP32 when their op type is listed in ``keep_fp32_ops``, when their op is not in
``FP16_OPS`` (ops whose every float input is the same type T, so they are safe to convert
blindly), when one of their weights does not fit FP16 (reported, never clamped), or when their
measured FP32 output magnitude comes within ``FP16_HEADROOM`` of the FP16 maximum. Casts are
inserted wherever a tensor crosses between the FP16 and FP32 parts of the graph.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from bninception.core.errors import BninceptionError
from bninception.export.graph import tensor_types

if TYPE_CHECKING:
    import onnx

FP16_MAX = 65504.0
FP16_SMALLEST_NORMAL = 2.0 ** -14
FP16_SMALLEST = 2.0 ** -24  # the smallest subnormal; anything below rounds to 0
FP16_HEADROOM = 0.5  # keep a node FP32 if its measured |output| exceeds this share of FP16_MAX
FP16_OPS = frozenset({
    "Conv", "ConvTranspose", "Gemm", "MatMul", "Relu", "LeakyRelu", "PRelu", "Sigmoid", "Tanh", "Clip",
    "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Concat", "Add", "Sub", "Mul",
    "Div", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Transpose", "Identity", "Dropout",
    "Softmax", "LogSoftmax", "BatchNormalization", "Pad", "Constant", "Slice", "Split", "Gather",
})
# Default decided from measurements (see fp16_stage and the report): none. On the demo model and
# full-width BN-Inception the all-FP16 graph meets the gate by a wide margin, and every FP32 island
# costs two Casts; magnitude-based protection (FP16_HEADROOM) covers overflow where it occurs.
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


def convert_fp16(model: onnx.ModelProto, keep_fp32_ops: tuple[str, ...] | list[str] = DEFAULT_KEEP_FP32_OPS,
                 keep_fp32_nodes: tuple[str, ...] | list[str] = (),
                 activation_amax: dict[str, float] | None = None) -> tuple[onnx.ModelProto, Fp16Report]:
    """A copy of ``model`` in FP16 with FP32 graph inputs and outputs (see the module docstring).

    ``activation_amax``: measured max |value| of node outputs in FP32 (optional); a node whose
    output exceeds ``FP16_HEADROOM * FP16_MAX`` is kept in FP32.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    src = onnx.ModelProto()
    src.CopyFrom(model)
    graph = src.graph
    types = tensor_types(src, strict=True)
    report = Fp16Report()
    inits = {init.name: init for init in graph.initializer}
    graph_outputs = {value.name for value in graph.output}
    keep_ops = set(keep_fp32_ops)
    keep_names = set(keep_fp32_nodes)
    limit = FP16_HEADROOM * FP16_MAX

    def is_float(name: str) -> bool:
        if name not in types:
            raise BninceptionError(f"FP16 conversion: the type of tensor {name!r} is unknown "
                                   "(shape inference could not type it)")
        return types[name] == TensorProto.FLOAT

    # -- decide which nodes stay FP32, with the reason ---------------------------------------
    fp32_nodes: set[int] = set()
    for index, node in enumerate(graph.node):
        label = node.name or node.output[0]
        reason = ""
        if node.op_type in keep_ops:
            reason = f"op {node.op_type} kept FP32 (keep_fp32_ops)"
        elif label in keep_names:
            reason = "node kept FP32 (keep_fp32_nodes)"
        elif node.domain not in ("", "ai.onnx") or node.op_type not in FP16_OPS:
            reason = f"op {node.op_type} not on the FP16-safe list"
        else:
            for name in node.input:
                if name in inits and inits[name].data_type == TensorProto.FLOAT:
                    overflow, _ = weight_range_report(name, numpy_helper.to_array(inits[name]))
                    if overflow:
                        reason = f"weight {name} exceeds the FP16 range"
                        if overflow not in report.out_of_range_weights:
                            report.out_of_range_weights.append(overflow)
            for name in node.output:
                if activation_amax and activation_amax.get(name, 0.0) > limit:
                    reason = (f"output {name} reaches {activation_amax[name]:.4g} "
                              f"> {FP16_HEADROOM:g} x FP16 max")
        if reason:
            fp32_nodes.add(index)
            report.kept_nodes.append(label)
            report.kept_reasons[label] = reason
    home16 = {out for i, node in enumerate(graph.node) if i not in fp32_nodes for out in node.output
              if out and is_float(out)}

    # -- rebuild the node list with boundary Casts --------------------------------------------
    new_nodes: list[onnx.NodeProto] = []
    new_inits: dict[str, onnx.TensorProto] = {}
    made: set[str] = set()

    def stored(name: str) -> str:
        return f"{name}__fp16" if name in home16 and name in graph_outputs else name

    def cast(src_name: str, dst_name: str, to: int) -> None:
        if dst_name not in made:
            new_nodes.append(helper.make_node("Cast", [src_name], [dst_name], to=to, name=f"Cast_{dst_name}"))
            made.add(dst_name)
            report.casts += 1

    def fp16_view(name: str) -> str:
        if name in home16:
            return stored(name)
        if name in inits:
            target = f"{name}__fp16"
            if target not in new_inits:
                array = numpy_helper.to_array(inits[name])
                overflow, underflow = weight_range_report(name, array)
                if overflow and overflow not in report.out_of_range_weights:
                    report.out_of_range_weights.append(overflow)  # shared with a kept node: inf here
                if underflow:
                    report.underflow_weights.append(underflow)
                new_inits[target] = numpy_helper.from_array(array.astype(np.float16), target)
                report.converted_initializers += 1
            return target
        cast(name, f"{name}__fp16", TensorProto.FLOAT16)
        return f"{name}__fp16"

    def fp32_view(name: str) -> str:
        if name not in home16 or name in graph_outputs:
            return name  # already FP32 (or its boundary Cast produces the FP32 graph output)
        cast(name, f"{name}__fp32", TensorProto.FLOAT)
        return f"{name}__fp32"

    for index, node in enumerate(graph.node):
        converted = index not in fp32_nodes
        for slot, name in enumerate(node.input):
            if name and is_float(name):
                node.input[slot] = fp16_view(name) if converted else fp32_view(name)
        original_outputs = list(node.output)
        if converted:
            report.converted_nodes += 1
            for slot, name in enumerate(node.output):
                node.output[slot] = stored(name) if name else name
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == TensorProto.FLOAT:
                    attr.t.CopyFrom(numpy_helper.from_array(
                        numpy_helper.to_array(attr.t).astype(np.float16), attr.t.name))
        new_nodes.append(node)
        if converted:
            for name in original_outputs:
                if name in home16 and name in graph_outputs:
                    cast(stored(name), name, TensorProto.FLOAT)
    # -- assemble ------------------------------------------------------------------------------
    read = {name for node in new_nodes for name in node.input}
    kept_inits = [init for init in graph.initializer if init.name in read]
    del graph.node[:]
    graph.node.extend(new_nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept_inits + [t for n, t in new_inits.items() if n in read])
    del graph.value_info[:]
    try:
        onnx.checker.check_model(src)
    except onnx.checker.ValidationError as exc:
        raise BninceptionError(f"FP16 conversion produced an invalid model: {exc}") from exc
    return src, report
