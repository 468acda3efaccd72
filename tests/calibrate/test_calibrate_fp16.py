"""FP16 conversion: FP16 inside, FP32 at the boundary, kept ops, out-of-range weights reported."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper
from tiny_onnx import images, tiny_model

from bninception.calibrate.fp16 import FP16_MAX, convert_fp16


def logits(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    from bninception.core.runner import OrtRunner, run_all

    return run_all(OrtRunner(model), x)


def _types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    out = {v.name: v.type.tensor_type.elem_type for v in [*g.input, *g.output, *g.value_info]}
    out.update({i.name: i.data_type for i in g.initializer})
    return out


def test_fp16_inside_fp32_at_the_boundary() -> None:
    model = tiny_model()
    half, report = convert_fp16(model)
    onnx.checker.check_model(half, full_check=True)
    types = _types(half)
    assert half.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert half.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    for node in half.graph.node:
        if node.op_type in ("Conv", "Gemm", "MatMul", "Relu", "Concat"):
            assert all(types[i] == TensorProto.FLOAT16 for i in node.input if i), node.name
    assert all(i.data_type == TensorProto.FLOAT16 for i in half.graph.initializer)
    casts = [n for n in half.graph.node if n.op_type == "Cast"]
    assert len(casts) == report.casts == 2  # one in, one out
    x = images(64, seed=9)
    ref, out = logits(model, x), logits(half, x)
    assert np.array_equal(ref.argmax(1), out.argmax(1))
    assert 0 < np.abs(ref - out).max() < 1e-2 * np.abs(ref).max()


def test_kept_ops_stay_fp32_with_casts() -> None:
    model = tiny_model()
    half, report = convert_fp16(model, keep_fp32_ops=["Gemm"])
    types = _types(half)
    fc = next(n for n in half.graph.node if n.name == "fc")
    assert all(types[i] == TensorProto.FLOAT for i in fc.input)
    assert types[fc.output[0]] == TensorProto.FLOAT
    assert report.kept_nodes == ["fc"] and "keep_fp32_ops" in report.kept_reasons["fc"]
    x = images(16)
    assert np.abs(logits(model, x) - logits(half, x)).max() < 1e-2 * np.abs(logits(model, x)).max()


def test_out_of_range_weight_is_reported_not_clamped() -> None:
    model = tiny_model(big_weight=1e6)
    half, report = convert_fp16(model)
    assert report.out_of_range_weights == [{"tensor": "w1", "count": 1, "max_abs": 1e6}]
    assert "conv1" in report.kept_nodes and "FP16 range" in report.kept_reasons["conv1"]
    w1 = next(i for i in half.graph.initializer if i.name == "w1")
    assert w1.data_type == TensorProto.FLOAT and numpy_helper.to_array(w1).max() == 1e6
    out = logits(half, images(4))
    assert np.all(np.isfinite(out))


def test_activation_near_fp16_max_keeps_its_node_fp32() -> None:
    model = tiny_model()
    half, report = convert_fp16(model, activation_amax={"c2": FP16_MAX * 0.9, "c1": 10.0})
    assert report.kept_nodes == ["conv2"] and "FP16 max" in report.kept_reasons["conv2"]
    conv2 = next(n for n in half.graph.node if n.name == "conv2")
    assert _types(half)[conv2.output[0]] == TensorProto.FLOAT
