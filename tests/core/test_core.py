"""core/: the run layout, ONNX metadata, the ORT session factory, run_all and the stage skeleton."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from run_helpers import produce

from bninception.core import layout, metadata
from bninception.core.errors import BninceptionError
from bninception.core.preprocess import Preprocess
from bninception.core.rundir import RunDir
from bninception.core.runner import InputSpec, OrtRunner, run_all
from bninception.core.stage import Done, StageSpec, run_stage

GRAY = Preprocess(size=4, resize=4, channel_order="GRAY", mean=(0.5,), std=(0.25,))


# -- layout --------------------------------------------------------------------------------------
def test_layout_names_each_file_once_and_serves_int8_per_provider() -> None:
    files = [a.file for a in layout.ONNX_ARTIFACTS]
    assert len(files) == len(set(files)) and set(layout.PRECISION_FILES.values()) <= set(files)
    assert layout.served_files("int8", "cpu") == [layout.INT8_CPU, layout.INT8]
    assert layout.served_files("int8", "openvino") == [layout.INT8_CPU, layout.INT8]
    assert layout.served_files("int8", "cuda") == layout.served_files("int8", None) == [layout.INT8]
    assert layout.served_files("fp16", "cpu") == [layout.FP16]
    assert layout.rejected("model.int8.onnx") == "model.int8.rejected.onnx"
    assert layout.make_hint(layout.FP16, "runs/x") == "run `bninception calibrate --run runs/x --precision fp16` first"
    assert layout.context_model_name("k") == "engines/k.ctx.onnx"
    with pytest.raises(KeyError):
        layout.served_files("bf16")


# -- metadata ------------------------------------------------------------------------------------
def _model_with(values: dict[str, str]) -> onnx.ModelProto:
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph)
    metadata.write(model, values)
    return model


def test_metadata_round_trip_and_optional_entries() -> None:
    values = metadata.entries(GRAY, ["n0", "n1"], {"width": 0.25}, "ab" * 32, ["zero", "one"])
    assert set(values) == set(metadata.KEYS)
    parsed = metadata.read(_model_with(values), "m.onnx", num_classes=2)
    assert parsed.preprocess == GRAY and parsed.labels == ["n0", "n1"] and parsed.names_for(2) == ["zero", "one"]
    same = metadata.entries(GRAY, ["zero", "one"], None, None, ["zero", "one"])
    assert metadata.LABEL_NAMES not in same  # names equal to the ids are not written twice
    assert parsed.config == {"width": 0.25} and parsed.source_sha256 == "ab" * 32
    bare = metadata.parse({}, "bare.onnx")
    assert bare.preprocess is None and bare.labels_for(3) == ["0", "1", "2"] and bare.config == {}
    assert bare.names_for(3) == ["0", "1", "2"]


@pytest.mark.parametrize(("key", "value", "message"), [
    (metadata.LABELS, "not json", "is not valid JSON"),
    (metadata.LABELS, "[" * 100_000, r"is not valid JSON \(nested too deeply\)"),
    (metadata.LABELS, '["a"]', "must list 2 class names, got 1"),
    (metadata.LABELS, '{"a": 1}', "must be a JSON list"),
    (metadata.PREPROCESS, '{"size": 4}', "is not valid"),
    (metadata.CONFIG, "[1]", "must be a JSON object"),
])
def test_malformed_metadata_names_file_and_key(key: str, value: str, message: str) -> None:
    with pytest.raises(BninceptionError, match=f"m.onnx: metadata {key} {message}"):
        metadata.parse({key: value}, "m.onnx", num_classes=2)


# -- ONNX Runtime ----------------------------------------------------------------------------------
def _linear(classes: int = 3, fixed_batch: int | None = None) -> onnx.ModelProto:
    """x (N, 1, 2, 2) -> Flatten -> MatMul (4, classes) -> logits."""
    w = np.arange(4 * classes, dtype=np.float32).reshape(4, classes) / 10
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("MatMul", ["f", "w"], ["logits"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [fixed_batch or "N", 1, 2, 2])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [fixed_batch or "N", classes])],
        [onnx.numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_provider_names_and_clear_refusals() -> None:
    from bninception.core import ort

    assert ort.provider_name("cuda") == "CUDAExecutionProvider"
    assert ort.provider_name("CPUExecutionProvider") == "CPUExecutionProvider"
    assert ort.user_name("OpenVINOExecutionProvider") == "openvino"
    assert "cpu" in ort.available()
    assert ort.resolve(None) == ["CPUExecutionProvider"]
    with pytest.raises(BninceptionError, match="unknown execution provider 'tpu'"):
        ort.provider_name("tpu")
    missing = next(p for p in ("tensorrt", "cuda", "openvino") if p not in ort.available())
    with pytest.raises(BninceptionError, match=rf"execution provider {missing} is not available .*bninception\["):
        ort.resolve([missing])
    with pytest.raises(BninceptionError, match="ONNX Runtime cannot load the model on cpu"):
        ort.create_session(b"not a model")
    with pytest.raises(BninceptionError, match="does not exist"):
        ort.create_session("/nonexistent/model.onnx")


def test_cuda_provider_runs_fp32_without_tf32(monkeypatch: pytest.MonkeyPatch) -> None:
    """ONNX Runtime's CUDA provider defaults to use_tf32=1: FP32 convolutions in TF32 would break the
    1e-4 FP32 gate on Ampere and newer. Every CUDA session gets use_tf32=0 unless the caller says otherwise."""
    from bninception.core import ort

    assert ort.default_options("cuda") == {"use_tf32": "0"}
    assert ort.default_options("CUDAExecutionProvider") == {"use_tf32": "0"}
    assert ort.default_options("cpu") == {}
    seen: dict = {}

    class FakeSession:
        def __init__(self, source, sess_options, providers, provider_options) -> None:
            seen.update(zip(providers, provider_options, strict=True))

    monkeypatch.setattr(ort.onnxruntime(), "InferenceSession", FakeSession)
    monkeypatch.setattr(ort, "available", lambda: ["cuda", "cpu"])
    monkeypatch.setattr(ort, "resolve", lambda requested: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    ort.create_session(b"model bytes", providers=["cuda", "cpu"])
    assert seen["CUDAExecutionProvider"] == {"use_tf32": "0"}


def test_two_onnxruntime_builds_are_refused_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    from bninception.core import ort

    monkeypatch.setattr(ort, "installed_builds", lambda: ["onnxruntime", "onnxruntime-gpu"])
    with pytest.raises(BninceptionError, match=r"several ONNX Runtime builds are installed .*uninstall all"):
        ort.onnxruntime()


# -- Runner + run_all ------------------------------------------------------------------------------
class Recording:
    """A Runner with a batch range that records the batch sizes it was given."""

    name = "recording"

    def __init__(self, min_batch: int, max_batch: int | None, wrong_rows: bool = False) -> None:
        self.input_spec = InputSpec("x", 1, 2, 2, min_batch=min_batch, max_batch=max_batch)
        self.sizes: list[int] = []
        self.wrong_rows = wrong_rows

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.input_spec.check(batch)
        self.sizes.append(len(batch))
        if self.wrong_rows:
            return np.zeros((len(batch) + 1, 2), np.float32)
        return np.repeat(batch.reshape(len(batch), -1).sum(1, keepdims=True), 2, axis=1)


def test_run_all_chunks_to_the_range_and_pads_the_last_batch() -> None:
    images = np.random.default_rng(0).standard_normal((19, 1, 2, 2)).astype(np.float32)
    runner = Recording(min_batch=4, max_batch=8)
    out = run_all(runner, images, batch_size=64)
    assert runner.sizes == [8, 8, 4]  # 19 = 8 + 8 + 3, the last padded up to the profile's minimum
    np.testing.assert_allclose(out[:, 0], images.reshape(19, -1).sum(1), rtol=1e-6)
    unbounded = Recording(min_batch=1, max_batch=None)
    run_all(unbounded, images, batch_size=5)
    assert unbounded.sizes == [5, 5, 5, 4]
    with pytest.raises(BninceptionError, match=r"recording: expected logits of shape \(5, classes\)"):
        run_all(Recording(1, None, wrong_rows=True), images, batch_size=5)
    with pytest.raises(BninceptionError, match="no images"):
        run_all(unbounded, images[:0])


def test_ort_runner_checks_shapes_and_reads_fixed_batches() -> None:
    runner = OrtRunner(_linear(), name="linear")
    assert runner.input_spec == InputSpec("x", 1, 2, 2)
    x = np.ones((2, 1, 2, 2), np.float32)
    np.testing.assert_allclose(runner.run(x), np.ones((2, 4)) @ (np.arange(12).reshape(4, 3) / 10), rtol=1e-6)
    with pytest.raises(BninceptionError, match=r"input 'x': expected shape \(N, 1, 2, 2\), got \(2, 1, 3, 3\)"):
        runner.run(np.ones((2, 1, 3, 3), np.float32))
    fixed = OrtRunner(_linear(fixed_batch=2))
    assert (fixed.input_spec.min_batch, fixed.input_spec.max_batch) == (2, 2)
    assert run_all(fixed, np.ones((3, 1, 2, 2), np.float32)).shape == (3, 3)  # 2 + 1 padded to 2


# -- stage skeleton --------------------------------------------------------------------------------
def test_stage_requires_skips_and_records_only_after_success(tmp_path) -> None:  # type: ignore[no-untyped-def]
    run = RunDir(tmp_path)
    spec = StageSpec("demo", {"k": 1}, ["in.txt"], ["out.txt"], optional_outputs=("extra.txt",),
                     hints={"in.txt": "make it with `touch`"})
    calls: list[str] = []

    def body() -> Done:
        calls.append("ran")
        run.path("out.txt").write_text(run.path("in.txt").read_text().upper())
        run.path("extra.txt").write_text("x")
        return Done({"n": 1}, value="v", message="made out.txt")

    with pytest.raises(BninceptionError, match=r"in.txt is missing \(make it with `touch`\)"):
        run_stage(run, spec, body)
    run.path("in.txt").write_text("abc")
    with pytest.raises(BninceptionError, match=r"in.txt was not recorded by a finished stage"):
        run_stage(run, spec, body)  # a file no stage recorded is never read
    produce(run, "in.txt", "abc")
    first = run_stage(run, spec, body)
    assert first.status == "done" and first.value == "v" and first.to_dict()["n"] == 1
    assert set(run.manifest()["stages"]["demo"]["outputs"]) == {"out.txt", "extra.txt"}
    again = run_stage(run, spec, body, on_skip=lambda: "reloaded")
    assert again.skipped and again.value == "reloaded" and calls == ["ran"]
    assert run_stage(run, spec, body, force=True).status == "done" and len(calls) == 2

    def failing() -> Done:
        run.path("out.txt").write_text("half")
        raise BninceptionError("boom")

    with pytest.raises(BninceptionError, match="boom"):
        run_stage(run, spec, failing, force=True)
    assert not run.path("out.txt").exists()  # what the failed run changed is removed: no one reads it
    assert run.path("extra.txt").read_text() == "x"  # unchanged since its record: kept
    run.forget("demo")
    with pytest.raises(BninceptionError, match="boom"):
        run_stage(run, spec, failing)
    assert "demo" not in run.manifest()["stages"]  # a failed stage claims nothing

    run.path("in.txt").write_text("changed by hand")
    with pytest.raises(BninceptionError, match=r"in.txt changed after stage make wrote it"):
        run_stage(run, spec, body)




def test_settings_bounds_come_from_the_fields() -> None:
    """One check for every settings record: lower and upper bounds and choices, named by their option."""
    from bninception.model.config import TrainConfig

    with pytest.raises(BninceptionError, match=r"training settings out of range: need lr-decay <= 1, init in"):
        TrainConfig(lr_decay=1.5, init="he")
    with pytest.raises(BninceptionError, match=r"need epochs >= 1, batch-size >= 2"):
        TrainConfig(epochs=0, batch_size=1)
    assert TrainConfig(lr_decay=1.0).lr_decay == 1.0
