"""INT8 Q/DQ (ONNX Runtime's writer, TensorRT layout): each TensorRT rule checked by walking the graph."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper
from tiny_onnx import images, tiny_model

from bninception.calibrate.qdq import TENSORRT, chained_ops, check_trt_layout, quantize, symmetric
from bninception.calibrate.ranges import collect, compute_amax
from bninception.core.errors import BninceptionError


def run_model(model: onnx.ModelProto, x: np.ndarray, optimization: str = "all") -> np.ndarray:
    from bninception.core.runner import OrtRunner, run_all

    return run_all(OrtRunner(model, optimization=optimization), x)


def calibrated(model: onnx.ModelProto, method: str = "minmax") -> dict[str, float]:
    from bninception.calibrate.graph import weighted_ops

    names = sorted({op.activation for op in weighted_ops(model)})
    x = images()
    stats = collect(model, names, lambda: [x[:16], x[16:]], histograms=method != "minmax")
    return compute_amax(stats, method)


@pytest.fixture(scope="module")
def quantized() -> tuple[onnx.ModelProto, onnx.ModelProto]:
    model = tiny_model()
    return model, quantize(model, symmetric(calibrated(model)), TENSORRT)


def test_each_tensorrt_rule_by_walking_the_graph(quantized: tuple[onnx.ModelProto, onnx.ModelProto]) -> None:
    _, q = quantized
    onnx.checker.check_model(q, full_check=True)
    inits = {i.name: i for i in q.graph.initializer}
    producer = {o: n for n in q.graph.node for o in n.output}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for n in q.graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    opset = next(o.version for o in q.opset_import if o.domain in ("", "ai.onnx"))
    assert 13 <= opset <= 20
    qdq_nodes = [n for n in q.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq_nodes
    for n in qdq_nodes:  # symmetric INT8: every zero point is an int8 zero
        zp = inits[n.input[2]]
        assert zp.data_type == TensorProto.INT8, n.name
        assert not np.any(numpy_helper.to_array(zp))
    weighted = [n for n in q.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    assert [n.name for n in weighted] == ["conv1", "conv2", "fc", "head"]
    expected_axis = {"conv1": 0, "conv2": 0, "fc": 0, "head": 1}
    for n in weighted:
        act_dq = producer[n.input[0]]
        assert act_dq.op_type == "DequantizeLinear"
        assert producer[act_dq.input[0]].op_type == "QuantizeLinear"
        assert numpy_helper.to_array(inits[act_dq.input[1]]).size == 1  # per-tensor activation scale
        w_dq = producer[n.input[1]]
        assert w_dq.op_type == "DequantizeLinear"
        weight = inits[w_dq.input[0]]
        assert weight.data_type == TensorProto.INT8
        axis = next(a.i for a in w_dq.attribute if a.name == "axis")
        assert axis == expected_axis[n.name]
        assert numpy_helper.to_array(inits[w_dq.input[1]]).shape == (weight.dims[axis],)  # per-channel
        if len(n.input) > 2:  # bias stays FP32, no int32 bias
            assert inits[n.input[2]].data_type == TensorProto.FLOAT
        for reader in readers.get(n.output[0], []):  # no Q/DQ right after a weighted op
            assert reader.op_type not in ("QuantizeLinear", "DequantizeLinear")
    assert not any(i.data_type == TensorProto.INT32 for i in inits.values())
    found = check_trt_layout(q)
    assert not found.errors and [str(w) for w in found.warnings] == [  # the pool reads conv2's dequantized input
        "conv2: activation DequantizeLinear is shared with other readers"]


def test_layout_checker_catches_violations(quantized: tuple[onnx.ModelProto, onnx.ModelProto]) -> None:
    _, q = quantized
    bad = onnx.ModelProto()
    bad.CopyFrom(q)
    zp_name = next(n.input[2] for n in q.graph.node if n.op_type == "QuantizeLinear")
    zp = next(i for i in bad.graph.initializer if i.name == zp_name)
    zp.CopyFrom(numpy_helper.from_array(np.array(3, np.int8), zp.name))
    assert any("non-zero zero point" in str(p) for p in check_trt_layout(bad).errors)
    bad.CopyFrom(q)
    zp = next(i for i in bad.graph.initializer if i.name == zp_name)
    zp.CopyFrom(numpy_helper.from_array(np.array(0, np.uint8), zp.name))
    assert any("not INT8" in str(p) for p in check_trt_layout(bad).errors)
    bad.CopyFrom(q)
    conv = next(n for n in bad.graph.node if n.name == "conv2")
    conv.input[0] = "r1"  # activation no longer quantized
    found = check_trt_layout(bad)
    assert [str(w) for w in found.warnings] == ["conv2: Conv runs in float: its input is not read through "
                                                "DequantizeLinear"] and not found.errors  # advice, not an error
    assert check_trt_layout(tiny_model()).errors == []  # a float model breaks no rule: every op runs in float
    assert len(check_trt_layout(tiny_model()).warnings) == 4  # conv1, conv2, fc, head


def test_int8_model_runs_on_ort_cpu_close_to_fp32(quantized: tuple[onnx.ModelProto, onnx.ModelProto]) -> None:
    """The Q/DQ arithmetic as ONNX defines it (graph optimizations off: the same on every CPU; fused
    integer kernels for this layout differ per host and are gated by validate where they run)."""
    model, q = quantized
    x = images(64, seed=5)
    ref, out = run_model(model, x), run_model(q, x, optimization="disable")
    error = np.abs(ref - out).max() / np.abs(ref).max()
    assert 0 < error < 0.05  # quantized (not identical), yet close


def test_weights_are_per_channel_int8_within_half_a_step(quantized: tuple[onnx.ModelProto, onnx.ModelProto]
                                                         ) -> None:
    model, q = quantized
    inits = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    original = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in (n for n in q.graph.node if n.op_type == "DequantizeLinear" and n.input[0].endswith("_quantized")):
        weight = original[node.input[0].removesuffix("_quantized")]
        axis = next(a.i for a in node.attribute if a.name == "axis")
        levels, scale = inits[node.input[0]], inits[node.input[1]]
        assert levels.dtype == np.int8 and scale.shape == (weight.shape[axis],)
        shape = [1] * weight.ndim
        shape[axis] = -1
        restored = levels.astype(np.float64) * scale.reshape(shape)
        assert np.max(np.abs(restored - weight)) <= scale.max() / 2 + 1e-6  # rounding, never clipping
        moved = np.moveaxis(np.abs(weight), axis, 0).reshape(weight.shape[axis], -1).max(1)
        assert np.allclose(scale, moved / 127, rtol=1e-5)  # symmetric: the largest |w| maps to +-127


def test_weighted_op_fed_by_weighted_op_stays_float() -> None:
    model = tiny_model(chained=True)
    assert chained_ops(model) == ["head"]
    q = quantize(model, symmetric(calibrated(model)), TENSORRT)
    head = next(n for n in q.graph.node if n.name == "head")
    assert head.input[0] == "fc" and head.input[1] == "wm"
    assert not any(n.input[0] == "fc" for n in q.graph.node if n.op_type == "QuantizeLinear")
    found = check_trt_layout(q)
    assert not found.errors and "head" in [w.node for w in found.warnings]


def test_refuses_bad_opset_unnamed_nodes_and_missing_ranges() -> None:
    with pytest.raises(BninceptionError, match=r"opset 21 is outside 13\.\.20"):
        quantize(tiny_model(opset=21), {}, TENSORRT)
    with pytest.raises(BninceptionError, match="no calibration range"):
        quantize(tiny_model(), {"data": (-1.0, 1.0)}, TENSORRT)
    unnamed = tiny_model()
    unnamed.graph.node[1].name = ""
    with pytest.raises(BninceptionError, match="unnamed"):
        quantize(unnamed, symmetric(calibrated(tiny_model())), TENSORRT)
    with pytest.raises(BninceptionError, match="not a finite non-negative"):
        symmetric({"data": float("nan")})


def test_cpu_layout_fuses_into_integer_kernels(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The CPU layout alone: U8 activations (zero point 0 after a ReLU), S8 per-channel weights, and
    ONNX Runtime's CPU provider really runs integer kernels for every weighted op."""
    import onnxruntime as ort

    from bninception.calibrate.qdq import CPU, cpu_ranges
    from bninception.calibrate.ranges import collect

    model = tiny_model()
    x = images()
    names = [v.name for v in model.graph.input] + [o for n in model.graph.node for o in n.output]
    stats = collect(model, names, lambda: [x[:16], x[16:]], histograms=False)
    ranges = cpu_ranges(stats.amax, stats.amin)
    assert ranges["r1"] == (0.0, stats.amax["r1"]) and ranges["data"][0] == -stats.amax["data"]
    q = quantize(model, ranges, CPU)
    inits = {i.name: i for i in q.graph.initializer}
    activation_zp = {inits[n.input[2]].data_type for n in q.graph.node if n.op_type == "QuantizeLinear"}
    assert activation_zp == {TensorProto.UINT8}
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(q.SerializeToString(), options, providers=["CPUExecutionProvider"])
    kernels = {n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node}
    assert {"QLinearConv", "QGemm"} <= kernels and "Conv" not in kernels
    ref, out = run_model(model, x), run_model(q, x)
    assert 0 < np.abs(ref - out).max() / np.abs(ref).max() < 0.05
