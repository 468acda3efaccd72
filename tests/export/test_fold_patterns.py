"""fold_batchnorm on small hand-built graphs, each pattern checked against the unfolded graph on
ONNX Runtime with graph optimizations disabled (so ORT's own Conv+BN fusion cannot hide a bug)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bninception.core.ort import create_session
from bninception.export.fold import fold_batchnorm

F32, F16 = TensorProto.FLOAT, TensorProto.FLOAT16
RNG = np.random.default_rng(1234)


def bn_params(prefix: str, c: int, dtype: type = np.float32,
              tiny_var: bool = False) -> list[onnx.TensorProto]:
    var = RNG.uniform(1e-7, 1e-5, c) if tiny_var else RNG.uniform(0.3, 2.0, c)
    arrays = [RNG.uniform(0.5, 1.5, c), RNG.normal(0, 0.5, c), RNG.normal(0, 0.5, c), var]
    names = ["scale", "B", "mean", "var"]
    return [numpy_helper.from_array(a.astype(dtype), f"{prefix}.{n}")
            for a, n in zip(arrays, names, strict=True)]


def bn_node(prefix: str, x: str, y: str, eps: float = 1e-5, **attrs: object) -> onnx.NodeProto:
    names = [f"{prefix}.{n}" for n in ("scale", "B", "mean", "var")]
    return helper.make_node("BatchNormalization", [x, *names], [y], name=prefix, epsilon=eps, **attrs)


def init(name: str, shape: tuple[int, ...], dtype: type = np.float32, scale: float = 0.5) -> onnx.TensorProto:
    return numpy_helper.from_array((RNG.standard_normal(shape) * scale).astype(dtype), name)


def model(nodes: list[onnx.NodeProto], inputs: list[tuple[str, int, list[object]]],
          outputs: list[tuple[str, int, list[object] | None]], inits: list[onnx.TensorProto],
          opset: int = 17, ir: int = 8) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir)
    m.metadata_props.append(onnx.StringStringEntryProto(key="k", value="v"))
    onnx.checker.check_model(m, full_check=True)
    return m


def feeds_for(m: onnx.ModelProto, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for value in m.graph.input:
        dims = [d.dim_value if d.dim_value else 2 for d in value.type.tensor_type.shape.dim]
        dtype = np.float16 if value.type.tensor_type.elem_type == F16 else np.float32
        out[value.name] = rng.standard_normal(dims).astype(dtype)
    return out


def assert_parity(before: onnx.ModelProto, after: onnx.ModelProto, rel: float = 1e-5) -> float:
    """max abs diff over all outputs, relative to the output scale; returns it."""
    onnx.checker.check_model(after, full_check=True)
    feeds = feeds_for(before)
    ref = create_session(before, optimization="disable").run(None, feeds)
    out = create_session(after, optimization="disable").run(None, feeds)
    worst = 0.0
    for a, b in zip(ref, out, strict=True):
        a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
        scale = max(1.0, float(np.abs(a64).max()))
        worst = max(worst, float(np.abs(a64 - b64).max()) / scale)
    assert worst <= rel, f"relative max abs diff {worst:.3g} > {rel:g}"
    return worst


def ops(m: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in m.graph.node]


def conv_bn_model(groups: int = 1, bias: bool = True, opset: int = 17, cin: int = 4, cout: int = 6,
                  dtype: type = np.float32, param_dtype: type | None = None) -> onnx.ModelProto:
    elem = F16 if dtype == np.float16 else F32
    conv_in = ["x", "w", "b"] if bias else ["x", "w"]
    inits = [init("w", (cout, cin // groups, 3, 3), dtype)] + ([init("b", (cout,), dtype)] if bias else [])
    inits += bn_params("bn", cout, param_dtype or dtype)
    nodes = [helper.make_node("Conv", conv_in, ["c"], name="conv", group=groups, pads=[1, 1, 1, 1]),
             bn_node("bn", "c", "y", eps=1e-3),
             helper.make_node("Relu", ["y"], ["out"], name="relu")]
    return model(nodes, [("x", elem, ["N", cin, 7, 7])], [("out", elem, ["N", cout, 7, 7])], inits, opset)


@pytest.mark.parametrize("groups,cin,cout", [(1, 4, 6), (2, 4, 6), (4, 4, 4), (4, 4, 8)],
                         ids=["plain", "grouped", "depthwise", "depthwise-x2"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_conv_bn_folds(groups: int, cin: int, cout: int, bias: bool) -> None:
    m = conv_bn_model(groups, bias, cin=cin, cout=cout)
    folded, report = fold_batchnorm(m)
    assert report.folded["Conv"] == 1 and report.bn_after == 0 and not report.left
    assert ops(folded) == ["Conv", "Relu"]
    assert folded.graph.node[0].name == "conv" and len(folded.graph.node[0].input) == 3
    assert {t.name for t in folded.graph.initializer} == ({"w", "b"} if bias else {"w", "conv_bnfold_bias"})
    assert_parity(m, folded)


@pytest.mark.parametrize("opset", [9, 14, 15])
def test_bn_opsets(opset: int) -> None:
    m = conv_bn_model(opset=opset)
    folded, report = fold_batchnorm(m)
    assert report.opset == opset and report.bn_after == 0
    assert folded.opset_import[0].version == opset
    assert_parity(m, folded)


def test_fp16_model() -> None:
    m = conv_bn_model(dtype=np.float16, opset=14)
    folded, report = fold_batchnorm(m)
    assert report.bn_after == 0
    assert all(t.data_type == F16 for t in folded.graph.initializer)
    assert_parity(m, folded, rel=2e-3)


def test_fp16_activations_fp32_bn_params_opset15() -> None:
    m = conv_bn_model(dtype=np.float16, param_dtype=np.float32, opset=15)
    folded, report = fold_batchnorm(m)
    assert report.bn_after == 0
    assert {t.data_type for t in folded.graph.initializer} == {F16}
    assert_parity(m, folded, rel=2e-3)


def test_epsilon_is_used() -> None:
    m = conv_bn_model()
    big_eps = onnx.ModelProto()
    big_eps.CopyFrom(m)
    for attr in big_eps.graph.node[1].attribute:
        if attr.name == "epsilon":
            attr.f = 0.5
    a, _ = fold_batchnorm(m)
    b, _ = fold_batchnorm(big_eps)
    assert not np.allclose(numpy_helper.to_array(a.graph.initializer[0]),
                           numpy_helper.to_array(b.graph.initializer[0]))
    assert_parity(big_eps, b)


@pytest.mark.parametrize("groups", [1, 2, 3])
def test_convtranspose_bn(groups: int) -> None:
    cin, cout = 6, 12
    inits = [init("w", (cin, cout // groups, 3, 3)), *bn_params("bn", cout)]
    nodes = [helper.make_node("ConvTranspose", ["x", "w"], ["c"], name="deconv", group=groups,
                              strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]),
             bn_node("bn", "c", "y")]
    m = model(nodes, [("x", F32, ["N", cin, 5, 5])], [("y", F32, ["N", cout, 10, 10])], inits)
    folded, report = fold_batchnorm(m)
    assert report.folded["ConvTranspose"] == 1 and ops(folded) == ["ConvTranspose"]
    assert_parity(m, folded)


@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("c_shape,beta",
                         [(None, 1.0), ((5,), 1.0), ((1, 5), 0.5), ((3, 5), 2.0), ((5,), 0.0)],
                         ids=["noC", "C", "C-row-beta", "C-full", "beta0"])
def test_gemm_bn(trans_b: int, c_shape: tuple[int, ...] | None, beta: float) -> None:
    k, n = 7, 5
    inits = [init("B", (n, k) if trans_b else (k, n)), *bn_params("bn", n)]
    inputs = ["a", "B"]
    if c_shape is not None:
        inits.append(init("C", c_shape))
        inputs.append("C")
    nodes = [helper.make_node("Gemm", inputs, ["g"], name="gemm", transB=trans_b, alpha=1.5, beta=beta),
             bn_node("bn", "g", "y")]
    m = model(nodes, [("a", F32, [3, k])], [("y", F32, [3, n])], inits)
    folded, report = fold_batchnorm(m)
    assert report.folded["Gemm"] == 1 and ops(folded) == ["Gemm"]
    assert_parity(m, folded)


def test_matmul_bn_and_matmul_add_bn() -> None:
    k, n = 6, 4
    inits = [init("w1", (k, n)), init("w2", (n, n)), init("bias2", (n,)),
             *bn_params("bn1", n), *bn_params("bn2", n)]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["m1"], name="mm1"), bn_node("bn1", "m1", "y1"),
             helper.make_node("MatMul", ["y1", "w2"], ["m2"], name="mm2"),
             helper.make_node("Add", ["bias2", "m2"], ["a2"], name="add2"), bn_node("bn2", "a2", "y")]
    m = model(nodes, [("x", F32, ["N", k])], [("y", F32, ["N", n])], inits)
    folded, report = fold_batchnorm(m)
    assert report.folded["MatMul"] == 1 and report.folded["MatMul+Add"] == 1 and report.bn_after == 0
    assert ops(folded) == ["MatMul", "Add", "MatMul", "Add"]
    assert_parity(m, folded)


def test_matmul_rank3_left_as_affine() -> None:
    """(N, T, F) @ W: BN's channel axis 1 is T, not the MatMul feature axis -> not folded into W."""
    inits = [init("w", (4, 4)), *bn_params("bn", 3)]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"], name="mm"), bn_node("bn", "m", "y")]
    m = model(nodes, [("x", F32, [2, 3, 4])], [("y", F32, [2, 3, 4])], inits)
    folded, report = fold_batchnorm(m)
    assert report.bn_after == 1 and "rank is 3" in report.left[0]["reason"]
    assert folded.SerializeToString() == m.SerializeToString()


def test_standalone_fp16_with_fp32_params_opset15() -> None:
    """Opset 15 lets BN take FP16 data with FP32 parameters: Mul/Add constants must be FP16."""
    nodes = [bn_node("bn", "x", "b"), helper.make_node("Relu", ["b"], ["y"], name="relu")]
    m = model(nodes, [("x", F16, ["N", 5, 4, 4])], [("y", F16, ["N", 5, 4, 4])],
              bn_params("bn", 5, np.float32), opset=15)
    folded, report = fold_batchnorm(m)
    assert report.folded["standalone->Mul+Add"] == 1
    assert {t.data_type for t in folded.graph.initializer} == {F16}
    assert_parity(m, folded, rel=2e-3)


def test_standalone_becomes_mul_add() -> None:
    """BN on the graph input followed by an activation: one Mul and one Add."""
    nodes = [bn_node("bn", "x", "b"), helper.make_node("Relu", ["b"], ["y"], name="relu")]
    m = model(nodes, [("x", F32, ["N", 5, 4, 4])], [("y", F32, ["N", 5, 4, 4])], bn_params("bn", 5))
    folded, report = fold_batchnorm(m)
    assert report.folded["standalone->Mul+Add"] == 1
    assert ops(folded) == ["Mul", "Add", "Relu"]
    assert [list(t.dims) for t in folded.graph.initializer] == [[5, 1, 1], [5, 1, 1]]
    assert_parity(m, folded)


@pytest.mark.parametrize("pads,groups", [([0, 0, 0, 0], 1), ([0, 0, 0, 0], 2), ([1, 1, 1, 1], 1),
                                         ([1, 1, 1, 1], 3)],
                         ids=["nopad", "nopad-grouped", "pad", "pad-grouped"])
def test_standalone_absorbed_into_following_convs(pads: list[int], groups: int) -> None:
    """Concat -> BN -> two Convs: the scale goes into both; the shift too only without padding."""
    c = 6
    inits = [*bn_params("bn", c), init("w1", (6, c // groups, 3, 3)), init("b1", (6,)),
             init("w2", (3 * groups, c // groups, 1, 1))]
    nodes = [helper.make_node("Concat", ["x1", "x2"], ["cat"], name="cat", axis=1),
             bn_node("bn", "cat", "b"),
             helper.make_node("Conv", ["b", "w1", "b1"], ["y1"], name="conv1", pads=pads, group=groups),
             helper.make_node("Conv", ["b", "w2"], ["y2"], name="conv2", group=groups)]
    spatial = 6 if pads[0] else 4
    m = model(nodes, [("x1", F32, ["N", 2, 6, 6]), ("x2", F32, ["N", 4, 6, 6])],
              [("y1", F32, ["N", 6, spatial, spatial]), ("y2", F32, ["N", 3 * groups, 6, 6])], inits)
    folded, report = fold_batchnorm(m)
    if pads[0]:
        assert report.folded["standalone->Add+Conv"] == 1
        assert ops(folded) == ["Concat", "Add", "Conv", "Conv"]
    else:
        assert report.folded["standalone->Conv"] == 1
        assert ops(folded) == ["Concat", "Conv", "Conv"]
    assert_parity(m, folded)


def test_standalone_with_zero_scale_and_padding_keeps_mul_add() -> None:
    params = bn_params("bn", 3)
    params[0] = numpy_helper.from_array(np.array([1.0, 0.0, 2.0], np.float32), "bn.scale")
    nodes = [helper.make_node("MaxPool", ["x"], ["p"], name="pool", kernel_shape=[2, 2]),
             bn_node("bn", "p", "b"),
             helper.make_node("Conv", ["b", "w"], ["y"], name="conv", pads=[1, 1, 1, 1])]
    m = model(nodes, [("x", F32, ["N", 3, 6, 6])], [("y", F32, ["N", 2, 5, 5])],
              [*params, init("w", (2, 3, 3, 3))])
    folded, report = fold_batchnorm(m)
    assert report.folded["standalone->Mul+Add"] == 1
    assert_parity(m, folded)


def test_bn_chain_after_conv() -> None:
    """Conv -> BN -> BN: the first folds into the conv, then the second does too."""
    inits = [init("w", (4, 3, 1, 1)), *bn_params("bn1", 4), *bn_params("bn2", 4)]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"), bn_node("bn1", "c", "m"),
             bn_node("bn2", "m", "y")]
    m = model(nodes, [("x", F32, ["N", 3, 4, 4])], [("y", F32, ["N", 4, 4, 4])], inits)
    folded, report = fold_batchnorm(m)
    assert report.folded["Conv"] == 2 and ops(folded) == ["Conv"]
    assert_parity(m, folded)


def test_shared_initializer_is_copied() -> None:
    """Three convs share one weight; two are followed by BNs with different stats, one is not."""
    inits = [init("w", (4, 4, 3, 3)), *bn_params("bn1", 4), *bn_params("bn2", 4)]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             bn_node("bn1", "c1", "y1"),
             helper.make_node("Conv", ["x", "w"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
             bn_node("bn2", "c2", "y2"),
             helper.make_node("Conv", ["x", "w"], ["y3"], name="conv3", pads=[1, 1, 1, 1])]
    out = [("y1", F32, ["N", 4, 5, 5]), ("y2", F32, ["N", 4, 5, 5]), ("y3", F32, ["N", 4, 5, 5])]
    m = model(nodes, [("x", F32, ["N", 4, 5, 5])], out, inits)
    folded, report = fold_batchnorm(m)
    assert report.folded["Conv"] == 2
    weights = {n.name: n.input[1] for n in folded.graph.node}
    assert weights["conv3"] == "w" and len(set(weights.values())) == 3
    original = numpy_helper.to_array(next(t for t in folded.graph.initializer if t.name == "w"))
    np.testing.assert_array_equal(original, numpy_helper.to_array(inits[0]))
    assert_parity(m, folded)


def test_bn_params_shared_between_bns() -> None:
    """Two BNs reading the same parameter initializers (as the torch exporter dedups them)."""
    params = bn_params("p", 4)
    inits = [init("w1", (4, 3, 1, 1)), init("w2", (4, 4, 1, 1)), *params]
    names = [t.name for t in params]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1"),
             helper.make_node("BatchNormalization", ["c1", *names], ["y1"], name="bn1"),
             helper.make_node("Conv", ["y1", "w2"], ["c2"], name="conv2"),
             helper.make_node("BatchNormalization", ["c2", *names], ["y"], name="bn2")]
    m = model(nodes, [("x", F32, ["N", 3, 4, 4])], [("y", F32, ["N", 4, 4, 4])], inits)
    folded, report = fold_batchnorm(m)
    assert report.bn_after == 0
    assert {t.name for t in folded.graph.initializer}.isdisjoint(names)  # unused BN params dropped
    assert_parity(m, folded)


# -- nodes that must be left, with a reason ------------------------------------------------------
def _leave_case(kind: str) -> onnx.ModelProto:
    inits = [init("w", (4, 3, 1, 1)), *bn_params("bn", 4)]
    conv = helper.make_node("Conv", ["x", "w"], ["c"], name="conv")
    bn = bn_node("bn", "c", "y")
    inputs = [("x", F32, ["N", 3, 4, 4])]
    outputs = [("y", F32, ["N", 4, 4, 4])]
    nodes = [conv, bn]
    if kind == "other-consumer":
        nodes.append(helper.make_node("Relu", ["c"], ["r"], name="relu"))
        outputs.append(("r", F32, ["N", 4, 4, 4]))
    elif kind == "graph-output":
        outputs.append(("c", F32, ["N", 4, 4, 4]))
    elif kind == "weight-not-constant":
        inits = inits[1:]
        inputs.append(("w", F32, [4, 3, 1, 1]))
    elif kind == "param-is-graph-input":
        inputs.append(("bn.var", F32, [4]))
    elif kind == "training-mode":
        nodes[1] = helper.make_node("BatchNormalization", ["c", "bn.scale", "bn.B", "bn.mean", "bn.var"],
                                    ["y", "rm", "rv"], name="bn", training_mode=1)
        outputs += [("rm", F32, [4]), ("rv", F32, [4])]
    return model(nodes, inputs, outputs, inits)


@pytest.mark.parametrize("kind,reason", [
    ("other-consumer", "has other consumers"), ("graph-output", "is a graph output"),
    ("weight-not-constant", "not a constant initializer"), ("param-is-graph-input", "also a graph input"),
    ("training-mode", "training mode"),
])
def test_left_untouched_with_reason(kind: str, reason: str) -> None:
    m = _leave_case(kind)
    folded, report = fold_batchnorm(m)
    assert report.bn_after == 1 and report.folded_total == 0
    assert len(report.left) == 1 and report.left[0]["node"] == "bn" and reason in report.left[0]["reason"]
    assert folded.SerializeToString() == m.SerializeToString()


def test_extra_outputs_in_inference_mode_left() -> None:
    """Opset 9 BN with its optional statistic outputs used downstream must not be folded."""
    inits = [init("w", (4, 3, 1, 1)), *bn_params("bn", 4)]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("BatchNormalization", ["c", "bn.scale", "bn.B", "bn.mean", "bn.var"],
                              ["y", "", "", "saved_mean"], name="bn")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F32, [2, 3, 4, 4])],
                              [helper.make_tensor_value_info("y", F32, [2, 4, 4, 4])], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)], ir_version=4)
    folded, report = fold_batchnorm(m)
    assert report.bn_after == 1 and "extra outputs" in report.left[0]["reason"]
    assert folded.SerializeToString() == m.SerializeToString()


def test_pure_idempotent_and_keeps_interface() -> None:
    m = conv_bn_model()
    before = m.SerializeToString()
    once, report1 = fold_batchnorm(m)
    assert m.SerializeToString() == before  # input untouched
    twice, report2 = fold_batchnorm(once)
    assert twice.SerializeToString() == once.SerializeToString()
    assert report2.folded_total == 0 and report2.bn_before == 0
    assert [i.name for i in once.graph.input] == ["x"] and [o.name for o in once.graph.output] == ["out"]
    assert {p.key: p.value for p in once.metadata_props} == {"k": "v"}
    data = report1.to_dict()
    assert data["folded_total"] == 1 and data["nodes_before"] == 3 and data["nodes_after"] == 2
    assert data["ops_after"] == {"Conv": 1, "Relu": 1} and data["seconds"] >= 0


def test_tiny_variances() -> None:
    """var ~ 1e-6 with eps 1e-5: a = gamma / sqrt(var + eps) is large; still exact."""
    inits = [init("w", (4, 3, 3, 3)), *bn_params("bn", 4, tiny_var=True)]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"), bn_node("bn", "c", "y")]
    m = model(nodes, [("x", F32, ["N", 3, 6, 6])], [("y", F32, ["N", 4, 4, 4])], inits)
    folded, _ = fold_batchnorm(m)
    assert_parity(m, folded)
