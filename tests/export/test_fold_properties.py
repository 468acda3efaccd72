"""Property tests: random conv shapes, groups, strides, paddings and BN statistics (tiny variances
included); the folded graph must match the unfolded one on ONNX Runtime (optimizations off)."""

from __future__ import annotations

import numpy as np
import onnx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from bninception.core.ort import create_session
from bninception.export.fold import fold_batchnorm

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


@st.composite
def conv_case(draw: st.DrawFn) -> dict:
    groups = draw(st.sampled_from([1, 2, 3]))
    depthwise = draw(st.booleans())
    cin = groups * draw(st.integers(1, 3))
    cout = cin if depthwise else groups * draw(st.integers(1, 3))
    if depthwise:
        groups = cin
    return {
        "groups": groups, "cin": cin, "cout": cout,
        "kernel": draw(st.integers(1, 3)), "stride": draw(st.integers(1, 2)),
        "pad": draw(st.integers(0, 2)), "bias": draw(st.booleans()),
        "tiny_var": draw(st.booleans()), "eps": draw(st.sampled_from([1e-5, 1e-3, 1e-1])),
        "size": draw(st.integers(5, 8)), "seed": draw(st.integers(0, 2**16)),
        "bn_first": draw(st.booleans()),
    }


def _bn(rng: np.random.Generator, c: int, tiny: bool) -> list[onnx.TensorProto]:
    var = rng.uniform(1e-8, 1e-6, c) if tiny else rng.uniform(0.1, 3.0, c)
    values = [rng.uniform(-1.5, 1.5, c), rng.normal(0, 1, c), rng.normal(0, 1, c), var]
    return [numpy_helper.from_array(v.astype(np.float32), n) for v, n in
            zip(values, ["s", "b", "m", "v"], strict=True)]


def _build(case: dict) -> onnx.ModelProto:
    rng = np.random.default_rng(case["seed"])
    k, g = case["kernel"], case["groups"]
    bn_channels = case["cin"] if case["bn_first"] else case["cout"]
    inits = [numpy_helper.from_array(rng.standard_normal((case["cout"], case["cin"] // g, k, k))
                                     .astype(np.float32), "w"), *_bn(rng, bn_channels, case["tiny_var"])]
    conv_inputs = ["w"]
    if case["bias"]:
        inits.append(numpy_helper.from_array(rng.standard_normal(case["cout"]).astype(np.float32), "cb"))
        conv_inputs.append("cb")
    attrs = {"group": g, "strides": [case["stride"]] * 2, "pads": [case["pad"]] * 4, "kernel_shape": [k, k]}
    bn_in, conv_in = ("p", "t") if case["bn_first"] else ("t", "p")
    nodes = [helper.make_node("Relu", ["x"], ["p"], name="relu")]  # BN-first: BN after an activation
    if case["bn_first"]:
        nodes += [helper.make_node("BatchNormalization", [bn_in, "s", "b", "m", "v"], ["t"], name="bn",
                                   epsilon=case["eps"]),
                  helper.make_node("Conv", [conv_in, *conv_inputs], ["y"], name="conv", **attrs)]
    else:
        nodes += [helper.make_node("Conv", [conv_in, *conv_inputs], ["t"], name="conv", **attrs),
                  helper.make_node("BatchNormalization", [bn_in, "s", "b", "m", "v"], ["y"], name="bn",
                                   epsilon=case["eps"])]
    graph = helper.make_graph(
        nodes, "prop", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                      ["N", case["cin"], case["size"], case["size"]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", case["cout"], "H", "W"])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _relative_diff(before: onnx.ModelProto, after: onnx.ModelProto, case: dict) -> float:
    x = np.random.default_rng(case["seed"] + 1).standard_normal(
        (2, case["cin"], case["size"], case["size"])).astype(np.float32)
    ref = create_session(before, optimization="disable").run(None, {"x": x})[0].astype(np.float64)
    out = create_session(after, optimization="disable").run(None, {"x": x})[0].astype(np.float64)
    return float(np.abs(ref - out).max() / max(1.0, np.abs(ref).max()))


@SETTINGS
@given(conv_case())
def test_fold_matches_unfolded(case: dict) -> None:
    model = _build(case)
    folded, report = fold_batchnorm(model)
    onnx.checker.check_model(folded, full_check=True)
    assert report.bn_after == 0 and report.folded_total == 1
    expected = {True: ("standalone->Conv" if case["pad"] == 0 else "standalone->Add+Conv"), False: "Conv"}
    pattern = next(k for k, v in report.folded.items() if v)
    assert pattern == expected[case["bn_first"]]
    assert _relative_diff(model, folded, case) <= 1e-5
    again, second = fold_batchnorm(folded)
    assert second.folded_total == 0 and again.SerializeToString() == folded.SerializeToString()


@SETTINGS
@given(n=st.integers(1, 6), k=st.integers(1, 6), trans_b=st.booleans(), seed=st.integers(0, 2**16),
       tiny=st.booleans())
def test_gemm_fold_matches(n: int, k: int, trans_b: bool, seed: int, tiny: bool) -> None:
    rng = np.random.default_rng(seed)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    c = rng.standard_normal(n).astype(np.float32)
    inits = [numpy_helper.from_array(b, "B"), numpy_helper.from_array(c, "C"), *_bn(rng, n, tiny)]
    nodes = [helper.make_node("Gemm", ["a", "B", "C"], ["g"], transB=int(trans_b), beta=0.7),
             helper.make_node("BatchNormalization", ["g", "s", "b", "m", "v"], ["y"])]
    graph = helper.make_graph(nodes, "gemm", [helper.make_tensor_value_info("a", TensorProto.FLOAT, [3, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, n])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    folded, report = fold_batchnorm(model)
    assert report.folded["Gemm"] == 1
    onnx.checker.check_model(folded, full_check=True)
    x = rng.standard_normal((3, k)).astype(np.float32)
    ref = create_session(model, optimization="disable").run(None, {"a": x})[0].astype(np.float64)
    out = create_session(folded, optimization="disable").run(None, {"a": x})[0].astype(np.float64)
    assert np.abs(ref - out).max() / max(1.0, np.abs(ref).max()) <= 1e-5
