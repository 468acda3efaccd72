"""engines/<key>.ctx.onnx: the ONNX Runtime EPContext wrapper that makes the TensorRT EP run our own plan.

Checked here without a GPU: the wrapper is a valid ONNX model, its EPContext node carries exactly
the attributes ONNX Runtime's TensorRT EP reads (onnx_ctx_model_helper.h) with a relative path to
the plan beside it, I/O as in the source ONNX, and a CPU-only ONNX Runtime refuses it with our message.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import onnx
import pytest
from engine_fakes import A10, FakeBuilder, recorded_onnx
from onnx import TensorProto

from bninception.core.errors import BninceptionError
from bninception.core.rundir import RunDir
from bninception.engines import epcontext
from bninception.engines.detect import HostEnv
from bninception.engines.key import BuildOptions
from bninception.engines.stages import build_engine_stage
from bninception.engines.store import read_sidecar

H100 = HostEnv("10.13.0.35", "NVIDIA H100 80GB HBM3", "9.0")


@pytest.fixture
def built(tmp_path: Path) -> tuple[RunDir, dict]:
    run = RunDir(tmp_path / "run")
    recorded_onnx(run, "model.folded.onnx", classes=10)
    return run, build_engine_stage(run, "fp32", env=A10, builder=FakeBuilder()).to_dict()


def attributes(node: onnx.NodeProto) -> dict:
    values = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in values.items()}


def test_wrapper_is_a_valid_one_node_epcontext_model(built) -> None:
    run, summary = built
    key, path = summary["key"], Path(summary["context_model"])
    assert path == run.path(f"engines/{key}.ctx.onnx")
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert len(model.graph.node) == 1 and not model.graph.initializer
    node = model.graph.node[0]
    assert (node.op_type, node.domain) == ("EPContext", "com.microsoft")
    assert attributes(node) == {"embed_mode": 0, "ep_cache_context": f"{key}.plan", "hardware_architecture": "86",
                                "onnx_model_filename": "model.folded.onnx", "source": "TensorrtExecutionProvider"}
    assert (path.parent / attributes(node)["ep_cache_context"]).resolve() == Path(summary["plan"]).resolve()
    opsets = {o.domain: o.version for o in model.opset_import}
    assert opsets == {"": 17, "com.microsoft": 1}
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["bninception.engine_key"] == key and meta["bninception.tensorrt_version"] == "10.8.0.43"
    assert meta["bninception.plan_sha256"] == read_sidecar(summary["sidecar"]).plan_sha256


def test_wrapper_io_is_the_source_models_with_the_dynamic_batch(built) -> None:
    run, summary = built
    source = onnx.load(str(run.path("model.folded.onnx")))
    model = onnx.load(summary["context_model"])
    assert list(model.graph.input) == [vi for vi in source.graph.input if vi.name != "W"]
    assert list(model.graph.output) == list(source.graph.output)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and [d.dim_value for d in dims[1:]] == [1, 4, 4]
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    node = model.graph.node[0]
    assert list(node.input) == ["input"] and list(node.output) == ["logits"]
    assert model.ir_version == source.ir_version


def test_hardware_architecture_follows_the_plan(built, tmp_path: Path) -> None:
    _run, summary = built
    sidecar = read_sidecar(summary["sidecar"])
    assert epcontext.hardware_architecture(sidecar) == "86"
    h100 = dataclasses.replace(sidecar, spec=dataclasses.replace(sidecar.spec, env=H100))
    assert epcontext.hardware_architecture(h100) == "90"
    ampere = dataclasses.replace(sidecar, spec=dataclasses.replace(
        sidecar.spec, options=BuildOptions(hardware_compatibility="ampere_plus")))
    assert epcontext.hardware_architecture(ampere) == "80+"  # ORT's k_cc_hw_compatible
    same_cc = dataclasses.replace(sidecar, spec=dataclasses.replace(
        sidecar.spec, options=BuildOptions(hardware_compatibility="same_cc")))
    assert epcontext.hardware_architecture(same_cc) == "86"


@pytest.mark.parametrize("bad", ["/abs/x.plan", "../x.plan", "sub/../../x.plan", ""])
def test_plan_path_must_stay_beside_the_wrapper(built, bad: str) -> None:
    run, summary = built
    with pytest.raises(BninceptionError, match="ep_cache_context must be a path below the context model"):
        epcontext.build_context_model(read_sidecar(summary["sidecar"]), run.path("model.folded.onnx"), bad)


def test_wrapper_refuses_an_onnx_whose_input_changed(built) -> None:
    run, summary = built
    onnx.save(onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["images"], ["out"])], "g",
        [onnx.helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 1, 4, 4])],
        [onnx.helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 1, 4, 4])])),
        str(run.path("other.onnx")))
    with pytest.raises(BninceptionError, match=r"input 'input' of engine .* is not a graph input"):
        epcontext.build_context_model(read_sidecar(summary["sidecar"]), run.path("other.onnx"))


def test_cpu_only_onnx_runtime_refuses_with_our_message(built) -> None:
    import onnxruntime as ort

    _run, summary = built
    if "TensorrtExecutionProvider" in ort.get_available_providers():
        pytest.skip("this ONNX Runtime has the TensorRT provider")
    with pytest.raises(BninceptionError, match=r"runs only on ONNX Runtime's TensorrtExecutionProvider, which this "
                                               r"ONNX Runtime build does not have \(available: .*CPUExecutionProvider"):
        epcontext.ContextModelRunner(summary["context_model"], read_sidecar(summary["sidecar"]))
    # and ONNX Runtime itself cannot run the node on the CPU: the refusal is not ours alone
    with pytest.raises(Exception, match="EPContext"):
        ort.InferenceSession(summary["context_model"], providers=["CPUExecutionProvider"])


def test_provider_options_and_check_with_a_given_provider_list() -> None:
    assert epcontext.provider_options(1) == {"device_id": "1"}
    epcontext.check_provider(["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    with pytest.raises(BninceptionError, match=r"\(available: CUDAExecutionProvider, CPUExecutionProvider\)"):
        epcontext.check_provider(["CUDAExecutionProvider", "CPUExecutionProvider"])


def test_context_runner_loads_tensorrt_itself(built, monkeypatch: pytest.MonkeyPatch) -> None:
    """ONNX Runtime's TensorRT provider finds libnvinfer only after ``import tensorrt`` in the process
    (pip's [gpu] route): the runner imports it itself, and says so when it is missing."""
    from bninception.engines import detect

    _run, summary = built
    monkeypatch.setattr(epcontext, "check_provider", lambda: None)  # as on a host with onnxruntime-gpu
    loaded: list[str] = []
    monkeypatch.setattr(detect, "load_tensorrt", lambda: loaded.append("tensorrt"))  # returns None: missing
    with pytest.raises(BninceptionError, match="needs TensorRT's libraries"):
        epcontext.ContextModelRunner(summary["context_model"], read_sidecar(summary["sidecar"]))
    assert loaded == ["tensorrt"]
