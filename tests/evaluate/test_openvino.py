"""ONNX Runtime's OpenVINO execution provider: its default options, the graph OpenVINO reads, and (where the
provider is installed: ``make test-openvino``) every gate of a demo-size run on it, plus serve's auto-pick.

Speed is measured by ``benchmarks/cpu_runtimes.py``, never here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from bninception.core import layout, ort
from bninception.core.errors import BninceptionError
from bninception.core.rundir import RunDir

OPENVINO = "openvino" in ort.available()
needs_openvino = pytest.mark.skipif(not OPENVINO, reason="ONNX Runtime's OpenVINO provider is not installed here "
                                                         "(onnxruntime-openvino: `make test-openvino`)")


# -- everywhere ------------------------------------------------------------------------------------
def test_openvino_defaults_pin_the_cpu_device_and_fp32_precision() -> None:
    options = ort.default_options("openvino")
    assert options["device_type"] == "CPU"
    assert json.loads(options["load_config"]) == {"CPU": {"INFERENCE_PRECISION_HINT": "f32"}}
    threaded = json.loads(ort.default_options("OpenVINOExecutionProvider", threads=3)["load_config"])
    assert threaded["CPU"]["INFERENCE_NUM_THREADS"] == "3"
    assert ort.default_options("cpu") == {} and ort.default_options("cuda", threads=2) == {"use_tf32": "0"}


def test_providers_flag_is_parsed_with_user_names_and_checked() -> None:
    assert ort.parse_providers(None) is None and ort.parse_providers(" , ") is None
    assert ort.parse_providers("CPU, cpu") == ["cpu"]
    assert ort.parse_providers(["CPUExecutionProvider"]) == ["cpu"]
    with pytest.raises(BninceptionError, match="unknown execution provider 'tpu'"):
        ort.parse_providers("cpu,tpu")
    missing = next(p for p in ("tensorrt", "cuda", "openvino") if p not in ort.available())
    with pytest.raises(BninceptionError, match=rf"{missing} is not available .*bninception\["):
        ort.parse_providers(missing)


def test_validate_and_bench_take_providers() -> None:
    from bninception.cli import build_parser
    from bninception.commands.validate import providers_and_engines

    assert providers_and_engines(None, no_engines=False) == (None, True)
    assert providers_and_engines(None, no_engines=True) == (None, False)
    assert providers_and_engines("cpu", no_engines=False) == (["cpu"], False)  # engines only when tensorrt is named
    for command in ("validate", "bench"):
        args = build_parser().parse_args([command, "--run", "runs/x", "--providers", "cpu,openvino"])
        assert args.providers == "cpu,openvino"


def _pool_model(size: int) -> onnx.ModelProto:
    """x (N, 2, size, size) -> MaxPool 3x3 stride 2 ceil_mode -> Relu."""
    nodes = [helper.make_node("MaxPool", ["x"], ["p"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
             helper.make_node("Relu", ["p"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, size, size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.mark.parametrize(("size", "rewritten"), [(2, 1), (3, 0), (8, 0)])
def test_ceil_mode_pool_larger_than_its_input_gets_explicit_pads_with_the_same_output(size: int,
                                                                                      rewritten: int) -> None:
    from bninception.export.graph import get_attr
    from bninception.export.to_onnx import explicit_pool_pads

    model = _pool_model(size)
    before = model.SerializeToString()
    assert explicit_pool_pads(model) == rewritten
    pool = model.graph.node[0]
    if rewritten:
        assert get_attr(pool, "ceil_mode") == 0 and get_attr(pool, "pads") == [0, 0, 1, 1]
    else:
        assert model.SerializeToString() == before  # graphs OpenVINO reads already stay byte-identical
    x = np.random.default_rng(size).standard_normal((3, 2, size, size)).astype(np.float32)
    ref = ort.create_session(onnx.load_from_string(before), optimization="disable").run(None, {"x": x})[0]
    out = ort.create_session(model, optimization="disable").run(None, {"x": x})[0]
    np.testing.assert_array_equal(out, ref)


def test_demo_size_export_has_no_pool_window_larger_than_its_input() -> None:
    from bninception.export.graph import get_attr, infer_types
    from bninception.export.to_onnx import to_model_proto
    from bninception.model.architecture import ModelConfig, build_model

    proto = to_model_proto(build_model(ModelConfig(num_classes=10, in_channels=1, width=0.25)).eval(), (1, 32, 32))
    graph = infer_types(proto).graph
    dims = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim][2:] for v in [*graph.value_info, *graph.input]}
    pools = [n for n in proto.graph.node if n.op_type in ("MaxPool", "AveragePool")]
    assert pools
    for node in pools:
        kernel, pads = get_attr(node, "kernel_shape"), get_attr(node, "pads", [0, 0, 0, 0])
        for axis, size in enumerate(dims[node.input[0]]):
            assert kernel[axis] <= size + pads[axis] + pads[axis + 2], node.name  # type: ignore[index]


# -- with the OpenVINO provider ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def openvino_run(tmp_path_factory: pytest.TempPathFactory) -> RunDir:
    """A demo-size run (digits, 32x32, width 0.25; a short recipe) with every ONNX artifact."""
    from bninception.calibrate.stages import fp16_stage, int8_stage
    from bninception.export.stages import export_stage, fold_stage
    from bninception.model.stages import population_stage, train_stage
    from bninception.model.train import TrainConfig

    run = RunDir(tmp_path_factory.mktemp("openvino_run"))
    train_stage(run, TrainConfig(epochs=EPOCHS), progress=False)
    population_stage(run)
    for stage in (export_stage, fold_stage, fp16_stage, int8_stage):
        stage(run)
    assert all(run.path(a.file).is_file() for a in layout.ONNX_ARTIFACTS)
    return run


EPOCHS = 6


@needs_openvino
def test_openvino_takes_every_node_of_every_artifact(openvino_run: RunDir, tmp_path: Path) -> None:
    """One OpenVINO subgraph and no CPU-provider node per file: the openvino rows really measure OpenVINO."""
    runtime = ort.onnxruntime()
    for entry in layout.ONNX_ARTIFACTS:
        options = runtime.SessionOptions()
        options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")  # fail, not fall back
        options.enable_profiling = True
        options.profile_file_prefix = str(tmp_path / entry.kind)
        session = runtime.InferenceSession(str(openvino_run.path(entry.file)), options,
                                           providers=[ort.PROVIDERS["openvino"]],
                                           provider_options=[ort.default_options("openvino")])
        session.run(None, {"data": np.zeros((2, 1, 32, 32), np.float32)})
        events = json.loads(Path(session.end_profiling()).read_text())
        nodes = [e["args"].get("provider") for e in events if e.get("cat") == "Node"]
        assert nodes == [ort.PROVIDERS["openvino"]], (entry.file, nodes)


@needs_openvino
def test_every_gate_holds_on_openvino_and_serve_picks_it(openvino_run: RunDir) -> None:
    from bninception.core.gates import compare
    from bninception.core.runner import run_all
    from bninception.evaluate.artifact_runners import discover
    from bninception.evaluate.data import load_eval_data
    from bninception.evaluate.validate import validate_run
    from bninception.serve.app import create_app
    from bninception.serve.config import ServeConfig
    from bninception.served import served_model

    report = validate_run(openvino_run, include_engines=False, providers=["openvino"], save=False)
    gated = [row for row in report.rows if row.backend == "onnxruntime"]
    assert len(gated) == len(layout.ONNX_ARTIFACTS)
    for row in gated:
        assert row.provider == "openvino" and row.status == "PASS", (row.name, row.failures, row.comparison)
    fp32 = next(row for row in gated if row.artifact == layout.FOLDED)
    assert fp32.comparison is not None and fp32.comparison.max_abs_diff is not None
    assert fp32.comparison.max_abs_diff <= 1e-4  # OpenVINO runs FP32 in f32, not its BF16 default

    served = served_model(openvino_run.root, "int8")
    assert served.providers == ("openvino",)  # the fastest provider here
    assert served.path.name == layout.served_files("int8", "openvino")[0]
    validated = next(r.comparison for r in gated if r.artifact == served.path.name)
    assert validated is not None
    state = create_app(served.path, ServeConfig(providers=served.providers)).state.server
    try:
        assert state.runner.providers[0] == ort.PROVIDERS["openvino"]
        data = load_eval_data(openvino_run)
        runners, _ = discover(openvino_run, include_engines=False, include_ema=False, providers=[])
        reference = run_all(next(a for a in runners if a.is_reference), data.images)
        got = compare(reference, run_all(state.runner, data.images), validated.source, data.labels)
    finally:
        state.close()
    assert (got.samples, got.top1_agreement, got.accuracy) == (validated.samples, validated.top1_agreement,
                                                               validated.accuracy)
    assert got.max_abs_diff == pytest.approx(validated.max_abs_diff, abs=1e-5)
