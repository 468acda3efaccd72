"""A tiny ONNX classifier with every weighted-op kind, and images for it (the calibrate/ tests)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def tiny_model(opset: int = 17, seed: int = 0, big_weight: float | None = None,
               chained: bool = False) -> onnx.ModelProto:
    """data(N,3,8,8) -> Conv+bias -> Relu -> {Conv 1x1 -> Relu, MaxPool} -> Concat -> GAP -> Flatten
    -> Gemm(transB=1) -> Relu -> MatMul -> logits(N,4): every weighted-op kind, a tensor read by both
    a Conv and a pool. ``chained``: the MatMul reads the Gemm output directly."""
    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.4
    if big_weight is not None:
        w1[0, 0, 0, 0] = big_weight
    inits = [
        numpy_helper.from_array(w1, "w1"),
        numpy_helper.from_array(rng.standard_normal(8).astype(np.float32) * 0.1, "b1"),
        numpy_helper.from_array(rng.standard_normal((8, 8, 1, 1)).astype(np.float32) * 0.4, "w2"),
        numpy_helper.from_array(rng.standard_normal((6, 16)).astype(np.float32) * 0.4, "wg"),
        numpy_helper.from_array(rng.standard_normal(6).astype(np.float32) * 0.1, "bg"),
        numpy_helper.from_array(rng.standard_normal((6, 4)).astype(np.float32) * 0.4, "wm"),
    ]
    nodes = [
        helper.make_node("Conv", ["data", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2"),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Concat", ["r2", "p1"], ["cat"], name="concat", axis=1),
        helper.make_node("GlobalAveragePool", ["cat"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "wg", "bg"], ["fc"], name="fc", transB=1),
        helper.make_node("Relu", ["fc"], ["fc_relu"], name="fc_relu"),
        helper.make_node("MatMul", ["fc_relu" if not chained else "fc", "wm"], ["logits"], name="head"),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def images(count: int = 32, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, 3, 8, 8)).astype(np.float32)
