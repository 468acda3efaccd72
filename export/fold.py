"""Graph-level BatchNormalization folding: ``fold_batchnorm(model) -> (model, FoldReport)``.

BN is ``y = a * x + b`` with ``a = scale / sqrt(var + eps)``, ``b = B - mean * a`` (float64). It folds
into a producing Conv / ConvTranspose / Gemm / MatMul (+ Add); else it becomes Mul + Add, pushed into
consuming Convs' input channels where that is exact. A BN that cannot fold exactly stays, with the
reason in the report.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import onnx

from bninception.export.graph import (
    DEFAULT_DOMAINS,
    FLOAT_TYPES,
    Graph,
    default_opset,
    get_attr,
    infer_types,
    set_attr,
)

PATTERNS = (
    "Conv", "ConvTranspose", "Gemm", "MatMul", "MatMul+Add",
    "standalone->Conv", "standalone->Add+Conv", "standalone->Mul+Add",
)


@dataclass
class FoldReport:
    """What the pass did: BN nodes folded per pattern, BN nodes left (with reasons), node counts."""

    folded: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PATTERNS, 0))
    left: list[dict[str, str]] = field(default_factory=list)
    details: list[dict[str, str]] = field(default_factory=list)
    opset: int = 0
    bn_before: int = 0
    bn_after: int = 0
    nodes_before: int = 0
    nodes_after: int = 0
    ops_before: dict[str, int] = field(default_factory=dict)
    ops_after: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def folded_total(self) -> int:
        return sum(self.folded.values())

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["folded_total"] = self.folded_total
        return data

    def summary(self) -> str:
        """A few human-readable lines."""
        parts = ", ".join(f"{k}: {v}" for k, v in self.folded.items() if v) or "none"
        lines = [
            f"BatchNormalization nodes: {self.bn_before} -> {self.bn_after} "
            f"(folded {self.folded_total}; {parts})",
            f"nodes: {self.nodes_before} -> {self.nodes_after}; pass time {self.seconds * 1000:.1f} ms",
        ]
        lines += [f"left {item['node']!r}: {item['reason']}" for item in self.left]
        return "\n".join(lines)


class _Leave(Exception):
    """Raised inside a pattern to leave the BN untouched with a reason."""


def _op(node: onnx.NodeProto | None, *types: str) -> bool:
    return node is not None and node.domain in DEFAULT_DOMAINS and node.op_type in types


def _zero_padding(conv: onnx.NodeProto) -> bool:
    auto_pad = get_attr(conv, "auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
    if auto_pad not in ("NOTSET", "VALID"):
        return False
    pads = get_attr(conv, "pads", None)
    return auto_pad == "VALID" or not pads or all(int(p) == 0 for p in pads)  # type: ignore[union-attr]


def _float_dtype(elem_type: int, what: str) -> type:
    if elem_type not in FLOAT_TYPES:
        name = onnx.TensorProto.DataType.Name(elem_type) if elem_type else "unknown"
        raise _Leave(f"{what} has element type {name}; only FLOAT, FLOAT16, DOUBLE are folded")
    return FLOAT_TYPES[elem_type]


class _Folder:
    def __init__(self, graph: Graph, opset: int, report: FoldReport) -> None:
        self.g = graph
        self.opset = opset
        self.report = report
        self.maybe_unused: set[str] = set()

    # -- the BN itself ----------------------------------------------------------------------
    def affine(self, bn: onnx.NodeProto) -> tuple[np.ndarray, np.ndarray]:
        """``(a, b)`` in float64, or _Leave when this BN is not a constant inference-mode BN."""
        self.check_inference_form(bn)
        scale, bias, mean, var = (self.g.const(n).astype(np.float64) for n in bn.input[1:])
        if not (scale.ndim == bias.ndim == mean.ndim == var.ndim == 1
                and scale.shape == bias.shape == mean.shape == var.shape):
            shapes = [p.shape for p in (scale, bias, mean, var)]
            raise _Leave(f"parameters are not 1-D of one length: {shapes}")
        for name in bn.input[1:]:
            _float_dtype(self.g.const_dtype(name), f"parameter {name!r}")
        eps = float(get_attr(bn, "epsilon", 1e-5))  # type: ignore[arg-type]
        if np.any(var + eps <= 0):
            raise _Leave("variance + epsilon is not positive for some channel")
        a = scale / np.sqrt(var + eps)
        b = bias - mean * a
        if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
            raise _Leave("parameters give a non-finite scale or shift")
        return a, b

    def check_inference_form(self, bn: onnx.NodeProto) -> None:
        """_Leave unless ``bn`` is an inference-mode, per-channel BN of constant parameters, no extra outputs."""
        if self.opset < 9:
            raise _Leave(f"BatchNormalization of opset {self.opset} (< 9) is not supported")
        if int(get_attr(bn, "training_mode", 0)) != 0:  # type: ignore[arg-type]
            raise _Leave("training mode (training_mode=1): it normalizes with batch statistics")
        if int(get_attr(bn, "spatial", 1)) != 1:  # type: ignore[arg-type]
            raise _Leave("spatial=0 BatchNormalization is not a per-channel affine map")
        if any(name for name in bn.output[1:]):
            raise _Leave("has extra outputs (running or saved statistics) that other nodes may use")
        if len(bn.input) != 5:
            raise _Leave(f"expected 5 inputs, found {len(bn.input)}")
        for name in bn.input[1:]:
            if not self.g.is_const(name):
                extra = (" (it is also a graph input, so it can be overridden at run time)"
                         if name in self.g.graph_inputs and name in self.g.inits else "")
                raise _Leave(f"parameter {name!r} is not a constant initializer{extra}")

    # -- helpers ------------------------------------------------------------------------------
    def weight(self, node: onnx.NodeProto, index: int, what: str) -> np.ndarray:
        name = node.input[index] if index < len(node.input) else ""
        if not self.g.is_const(name):
            raise _Leave(f"{node.op_type} {node.name!r} {what} {name!r} is not a constant initializer")
        _float_dtype(self.g.const_dtype(name), f"{node.op_type} {what} {name!r}")
        return self.g.const(name).astype(np.float64)

    def store(self, node: onnx.NodeProto, index: int, value: np.ndarray, like: str, base: str) -> None:
        """Write ``value`` (float64) into ``node.input[index]`` with the dtype of initializer ``like``."""
        dtype = FLOAT_TYPES[self.g.const_dtype(like)]
        self.g.set_input_const(node, index, value.astype(dtype), base)

    def producer_check(self, bn: onnx.NodeProto, producer: onnx.NodeProto) -> None:
        x = bn.input[0]
        if x in self.g.graph_outputs:
            raise _Leave(f"{producer.op_type} {producer.name!r} output {x!r} is a graph output")
        if len(self.g.consumers[x]) > 1:
            raise _Leave(f"{producer.op_type} {producer.name!r} output {x!r} has other consumers")

    def take_output(self, producer: onnx.NodeProto, bn: onnx.NodeProto) -> None:
        """The producer now writes the BN's output tensor; the BN goes away."""
        producer.output[0] = bn.output[0]
        self.g.remove(bn)
        self.maybe_unused.update(bn.input[1:])

    # -- patterns -----------------------------------------------------------------------------
    def fold_conv(self, bn: onnx.NodeProto, conv: onnx.NodeProto, a: np.ndarray, b: np.ndarray) -> str:
        self.producer_check(bn, conv)
        w = self.weight(conv, 1, "weight")
        has_bias = len(conv.input) > 2 and bool(conv.input[2])
        bias = self.weight(conv, 2, "bias") if has_bias else np.zeros(len(a))
        if conv.op_type == "Conv":
            if w.shape[0] != len(a):
                raise _Leave(f"Conv {conv.name!r} has {w.shape[0]} output channels, BN has {len(a)}")
            w = w * a.reshape((-1,) + (1,) * (w.ndim - 1))
        else:  # ConvTranspose: weight (C_in, C_out / group, k...), output channel g * (C_out/g) + j
            group = int(get_attr(conv, "group", 1))  # type: ignore[arg-type]
            per_group = w.shape[1]
            if per_group * group != len(a) or w.shape[0] % group:
                raise _Leave(f"ConvTranspose {conv.name!r} has {per_group * group} output channels, "
                             f"BN has {len(a)}")
            shaped = w.reshape((group, w.shape[0] // group, per_group, -1))
            w = (shaped * a.reshape(group, 1, per_group, 1)).reshape(w.shape)
        weight_name = conv.input[1]
        self.store(conv, 1, w, weight_name, f"{weight_name}_bnfold")
        self.store(conv, 2, bias * a + b, weight_name, f"{conv.name or weight_name}_bnfold_bias")
        self.take_output(conv, bn)
        return conv.op_type

    def fold_gemm(self, bn: onnx.NodeProto, gemm: onnx.NodeProto, a: np.ndarray, b: np.ndarray) -> str:
        self.producer_check(bn, gemm)
        w = self.weight(gemm, 1, "B")
        if w.ndim != 2:
            raise _Leave(f"Gemm {gemm.name!r} B is not 2-D")
        trans_b = int(get_attr(gemm, "transB", 0))  # type: ignore[arg-type]
        n = w.shape[0] if trans_b else w.shape[1]
        if n != len(a):
            raise _Leave(f"Gemm {gemm.name!r} has {n} outputs, BN has {len(a)}")
        w = w * (a[:, None] if trans_b else a[None, :])
        beta = float(get_attr(gemm, "beta", 1.0))  # type: ignore[arg-type]
        has_c = len(gemm.input) > 2 and bool(gemm.input[2])
        c = self.weight(gemm, 2, "C") * beta if has_c and beta != 0 else np.zeros(1)
        try:
            c = np.broadcast_to(c, np.broadcast_shapes(c.shape, (n,)))
        except ValueError as exc:
            raise _Leave(f"Gemm {gemm.name!r} C of shape {c.shape} does not broadcast to {n}") from exc
        weight_name = gemm.input[1]
        self.store(gemm, 1, w, weight_name, f"{weight_name}_bnfold")
        if has_c and beta == 0:
            self.maybe_unused.add(gemm.input[2])
            gemm.input[2] = ""
        self.store(gemm, 2, c * a + b, weight_name, f"{gemm.name or weight_name}_bnfold_bias")
        set_attr(gemm, "beta", 1.0)
        self.take_output(gemm, bn)
        return "Gemm"

    def matmul_weight(self, matmul: onnx.NodeProto, n: int) -> np.ndarray:
        if not self.g.is_const(matmul.input[1]):
            raise _Leave(f"MatMul {matmul.name!r} weight {matmul.input[1]!r} is not a constant initializer")
        w = self.weight(matmul, 1, "weight")
        if w.ndim != 2 or w.shape[1] != n:
            raise _Leave(f"MatMul {matmul.name!r} weight of shape {w.shape} does not give the BN's "
                         f"{n} channels")
        return w

    def check_rank2(self, bn: onnx.NodeProto) -> None:
        rank = self.g.rank.get(bn.input[0])
        if rank != 2:
            raise _Leave(f"MatMul output rank is {rank if rank is not None else 'unknown'}, not 2: "
                         "BN's channel axis 1 is not the MatMul's output feature axis")

    def fold_matmul(self, bn: onnx.NodeProto, matmul: onnx.NodeProto, a: np.ndarray, b: np.ndarray) -> str:
        self.producer_check(bn, matmul)
        self.check_rank2(bn)
        w = self.matmul_weight(matmul, len(a))
        weight_name = matmul.input[1]
        dtype = FLOAT_TYPES[self.g.const_dtype(weight_name)]
        self.store(matmul, 1, w * a[None, :], weight_name, f"{weight_name}_bnfold")
        shift = self.g.add_const(f"{bn.name or 'bn'}_bnfold_shift", b.astype(dtype))
        add = onnx.helper.make_node("Add", [bn.input[0], shift], [bn.output[0]],
                                    name=bn.name or self.g.unique("bnfold_add"))
        self.g.replace(bn, [add])
        self.maybe_unused.update(bn.input[1:])
        return "MatMul"

    def fold_matmul_add(self, bn: onnx.NodeProto, add: onnx.NodeProto, a: np.ndarray, b: np.ndarray) -> str:
        self.producer_check(bn, add)
        self.check_rank2(bn)
        sides = [i for i in (0, 1) if self.g.is_const(add.input[i])]
        if len(sides) != 1:
            raise _Leave(f"Add {add.name!r} is not MatMul output + constant bias")
        bias_index = sides[0]
        matmul = self.g.producer.get(add.input[1 - bias_index])
        if not _op(matmul, "MatMul"):
            raise _Leave(f"Add {add.name!r} does not add a bias to a MatMul output")
        mm_out = matmul.output[0]  # type: ignore[union-attr]
        if mm_out in self.g.graph_outputs or len(self.g.consumers[mm_out]) > 1:
            raise _Leave(f"MatMul {matmul.name!r} output {mm_out!r} has other consumers")  # type: ignore[union-attr]
        w = self.matmul_weight(matmul, len(a))  # type: ignore[arg-type]
        bias = self.weight(add, bias_index, "bias")
        try:
            folded_bias = bias * a + b
        except ValueError as exc:
            raise _Leave(f"Add {add.name!r} bias of shape {bias.shape} does not broadcast") from exc
        weight_name = matmul.input[1]  # type: ignore[union-attr]
        self.store(matmul, 1, w * a[None, :], weight_name, f"{weight_name}_bnfold")  # type: ignore[arg-type]
        bias_name = add.input[bias_index]
        self.store(add, bias_index, folded_bias, bias_name, f"{bias_name}_bnfold")
        self.take_output(add, bn)
        return "MatMul+Add"

    # -- standalone ---------------------------------------------------------------------------
    def channel_dtype(self, bn: onnx.NodeProto) -> type:
        x = bn.input[0]
        elem = self.g.elem_type.get(x)
        if elem is None and self.opset < 15:  # one type T for X and the parameters
            elem = self.g.const_dtype(bn.input[1])
        return _float_dtype(elem or 0, f"input {x!r}")

    def absorbable_convs(self, bn: onnx.NodeProto, channels: int) -> list[onnx.NodeProto]:
        """Consumers of the BN output, if all are Convs that can take an input-channel scale."""
        y = bn.output[0]
        if y in self.g.graph_outputs:
            return []
        convs = []
        for node, index in self.g.consumers.get(y, []):
            if not _op(node, "Conv") or index != 0 or y in node.input[1:]:
                return []
            if not self.g.is_const(node.input[1]) or self.g.const_dtype(node.input[1]) not in FLOAT_TYPES:
                return []
            if len(node.input) > 2 and node.input[2] and not self.g.is_const(node.input[2]):
                return []
            dims = self.g.inits[node.input[1]].dims
            group = int(get_attr(node, "group", 1))  # type: ignore[arg-type]
            if len(dims) < 3 or dims[1] * group != channels or dims[0] % group:
                return []
            convs.append(node)
        return convs

    @staticmethod
    def input_channel_index(w_shape: tuple[int, ...], group: int) -> np.ndarray:
        """For weight (M, C/g, ...): the BN channel feeding each (m, c) pair."""
        m, cg = w_shape[0], w_shape[1]
        return (np.arange(m) // (m // group))[:, None] * cg + np.arange(cg)[None, :]

    def absorb(self, bn: onnx.NodeProto, convs: list[onnx.NodeProto], a: np.ndarray, b: np.ndarray,
               with_shift: bool) -> None:
        for conv in convs:
            w = self.g.const(conv.input[1]).astype(np.float64)
            group = int(get_attr(conv, "group", 1))  # type: ignore[arg-type]
            idx = self.input_channel_index(w.shape, group)
            expand = (1,) * (w.ndim - 2)
            new_w = w * a[idx].reshape(idx.shape + expand)
            weight_name = conv.input[1]
            if with_shift:
                has_bias = len(conv.input) > 2 and bool(conv.input[2])
                bias = self.g.const(conv.input[2]).astype(np.float64) if has_bias else np.zeros(w.shape[0])
                bias = bias + (w * b[idx].reshape(idx.shape + expand)).reshape(w.shape[0], -1).sum(axis=1)
                self.store(conv, 2, bias, weight_name, f"{conv.name or weight_name}_bnfold_bias")
            self.store(conv, 1, new_w, weight_name, f"{weight_name}_bnfold")

    def fold_standalone(self, bn: onnx.NodeProto, a: np.ndarray, b: np.ndarray) -> str:
        x, y = bn.input[0], bn.output[0]
        rank = self.g.rank.get(x)
        if rank is None or rank < 2:
            raise _Leave(f"rank of input {x!r} is {rank if rank is not None else 'unknown'}; "
                         "cannot shape per-channel constants")
        dtype = self.channel_dtype(bn)
        base = bn.name or "bn"
        shape = (len(a),) + (1,) * (rank - 2)
        convs = self.absorbable_convs(bn, len(a))
        self.maybe_unused.update(bn.input[1:])
        if convs and all(_zero_padding(c) for c in convs):
            self.absorb(bn, convs, a, b, with_shift=True)
            for conv in convs:
                conv.input[0] = x
            self.g.remove(bn)
            return "standalone->Conv"
        if convs and np.all(a != 0):
            shift = (b / a).astype(dtype)
            if np.all(np.isfinite(shift)):
                self.absorb(bn, convs, a, b, with_shift=False)
                name = self.g.add_const(f"{base}_bnfold_shift", shift.reshape(shape))
                self.g.replace(bn, [onnx.helper.make_node("Add", [x, name], [y], name=bn.name)])
                return "standalone->Add+Conv"
        scale_name = self.g.add_const(f"{base}_bnfold_scale", a.astype(dtype).reshape(shape))
        shift_name = self.g.add_const(f"{base}_bnfold_shift", b.astype(dtype).reshape(shape))
        mid = self.g.unique(f"{base}_bnfold_scaled")
        self.g.rank[mid] = rank
        self.g.elem_type[mid] = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
        mul = onnx.helper.make_node("Mul", [x, scale_name], [mid], name=self.g.unique(f"{base}_mul"))
        add = onnx.helper.make_node("Add", [mid, shift_name], [y],
                                    name=bn.name or self.g.unique(f"{base}_add"))
        self.g.replace(bn, [mul, add])
        return "standalone->Mul+Add"

    # -- driver -------------------------------------------------------------------------------
    def fold_one(self, bn: onnx.NodeProto) -> str:
        a, b = self.affine(bn)
        producer = self.g.producer.get(bn.input[0])
        if _op(producer, "Conv", "ConvTranspose"):
            return self.fold_conv(bn, producer, a, b)  # type: ignore[arg-type]
        if _op(producer, "Gemm"):
            return self.fold_gemm(bn, producer, a, b)  # type: ignore[arg-type]
        if _op(producer, "MatMul"):
            return self.fold_matmul(bn, producer, a, b)  # type: ignore[arg-type]
        if _op(producer, "Add") and self._is_matmul_bias(producer):  # type: ignore[arg-type]
            return self.fold_matmul_add(bn, producer, a, b)  # type: ignore[arg-type]
        return self.fold_standalone(bn, a, b)

    def _is_matmul_bias(self, add: onnx.NodeProto) -> bool:
        return any(_op(self.g.producer.get(name), "MatMul") for name in add.input)

    def neighbourhood(self, bn: onnx.NodeProto) -> list[onnx.NodeProto]:
        """Every node a fold of ``bn`` may edit: the BN, its producer and the producer's producers
        (MatMul + Add), the BN's consumers (Convs that absorb it)."""
        g = self.g
        producer = g.producer.get(bn.input[0])
        nodes = [bn, *([producer] if producer is not None else [])]
        if producer is not None:
            nodes += [g.producer[name] for name in producer.input if name in g.producer]
        nodes += [node for node, _ in g.consumers.get(bn.output[0], ())]
        return list({id(n): n for n in nodes}.values())

    def run(self) -> None:
        left: dict[str, str] = {}
        changed = True
        while changed:
            changed = False
            for bn in [n for n in self.g.nodes if _op(n, "BatchNormalization")]:
                key = bn.name or bn.output[0]
                before = self.g.snapshot(self.neighbourhood(bn))
                try:
                    pattern = self.fold_one(bn)
                except _Leave as why:
                    left[key] = str(why)
                    continue
                self.g.update(before)
                left.pop(key, None)
                self.report.folded[pattern] += 1
                self.report.details.append({"node": key, "pattern": pattern})
                changed = True
        self.report.left = [{"node": k, "reason": v} for k, v in left.items()]


def _op_counts(model: onnx.ModelProto) -> dict[str, int]:
    return dict(sorted(Counter(n.op_type for n in model.graph.node).items()))


def fold_batchnorm(model: onnx.ModelProto) -> tuple[onnx.ModelProto, FoldReport]:
    """Fold every foldable BatchNormalization of ``model``'s main graph into a new model (the input is unchanged)."""
    start = time.perf_counter()
    report = FoldReport(opset=default_opset(model))
    report.ops_before = _op_counts(model)
    report.nodes_before = len(model.graph.node)
    report.bn_before = report.ops_before.get("BatchNormalization", 0)
    result = onnx.ModelProto()
    result.CopyFrom(model)
    if report.bn_before:
        graph = Graph(result, infer_types(model))
        folder = _Folder(graph, report.opset, report)
        folder.run()
        if report.folded_total:
            graph.commit(folder.maybe_unused | graph.touched_inits)
        else:
            result.CopyFrom(model)
    report.ops_after = _op_counts(result)
    report.nodes_after = len(result.graph.node)
    report.bn_after = report.ops_after.get("BatchNormalization", 0)
    report.seconds = time.perf_counter() - start
    return result, report
