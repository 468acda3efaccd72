"""engines.build.build_plan and the TensorRT runner's set-up, against each version's generated fake TensorRT.

The fakes simulate what these defects depend on: TensorRT keeps the first logger of the process;
``create_timing_cache`` returns None for a blob it cannot read; ``set_timing_cache(None)`` is a
TypeError; the engine and context are created on whatever CUDA device is current.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import pytest
from trt_api.fake import VERSIONS, fake_tensorrt

from bninception.core.errors import BninceptionError
from bninception.engines.build import build_plan
from bninception.engines.detect import HostEnv
from bninception.engines.key import BuildOptions, EngineSpec, Sidecar
from bninception.engines.profile import BatchProfile, OnnxInput
from bninception.engines.store import write_engine
from bninception.engines.trtlog import collect_errors, process_logger

INPUT = OnnxInput("input", "FLOAT", (None, 1, 4, 4))


def spec_for(trt, precision: str = "fp32", hardware_compatibility: str = "none") -> EngineSpec:
    env = HostEnv(trt.__version__, "NVIDIA A10", "8.6")
    return EngineSpec(precision, BatchProfile(1, 8, 32), "ab" * 32, env,
                      BuildOptions(hardware_compatibility=hardware_compatibility))


@pytest.fixture
def onnx_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.folded.onnx"
    path.write_bytes(b"onnx bytes (the fake parser does not read them)")
    return path


def use(monkeypatch: pytest.MonkeyPatch, version: str, **state):
    trt = fake_tensorrt(version, **state)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    return trt


@pytest.mark.parametrize("version", VERSIONS)
def test_build_plan_on_each_version(monkeypatch, onnx_file: Path, tmp_path: Path, version: str) -> None:
    trt = use(monkeypatch, version)
    cache = tmp_path / "engines" / "timing.cache"
    plan, policy = build_plan(onnx_file, spec_for(trt), INPUT, cache)
    assert plan.startswith(b"PLAN:")
    builds = [e for e in trt._state.events if e[0] == "build"]
    assert len(builds) == 1
    _, flags, hardware, profiles = builds[0]
    assert int(trt.BuilderFlag.TF32) not in flags  # FP32 parity: TF32 off
    assert hardware == trt.HardwareCompatibilityLevel.NONE
    assert profiles == [{"input": ((1, 1, 4, 4), (8, 1, 4, 4), (32, 1, 4, 4))}]
    assert policy["tf32"] == "off" and policy["trt_major"] == (11 if version == "11.x" else 10)
    assert policy["profile_shapes"] == {"min": [1, 1, 4, 4], "opt": [8, 1, 4, 4], "max": [32, 1, 4, 4]}
    assert cache.read_bytes() == b"CACHE" and policy["timing_cache"] == "used"


@pytest.mark.parametrize("version", VERSIONS)
def test_every_build_reports_its_own_errors(monkeypatch, onnx_file: Path, version: str) -> None:
    """TensorRT logs to the first logger of the process: a second build's errors must still be reported."""
    trt = use(monkeypatch, version)
    build_plan(onnx_file, spec_for(trt), INPUT)  # the first Builder registers the logger
    trt._state.build_errors = ["[optimizer] no implementation for layer conv_3a (out of workspace)"]
    with pytest.raises(BninceptionError, match=r"failed to build a fp32 engine .*no implementation for layer "
                                               r"conv_3a"):
        build_plan(onnx_file, spec_for(trt), INPUT)


@pytest.mark.parametrize("version", VERSIONS)
def test_a_build_after_a_runtime_exists_reports_its_errors(monkeypatch, onnx_file: Path, version: str) -> None:
    trt = use(monkeypatch, version, build_errors=["Error Code 4: Internal Error (bad shape)"])
    trt.Runtime(process_logger(trt))  # what TensorRTRunner does first, e.g. in validate before a build
    with pytest.raises(BninceptionError, match=r"Error Code 4: Internal Error \(bad shape\)"):
        build_plan(onnx_file, spec_for(trt), INPUT)


def test_errors_are_collected_per_block(monkeypatch) -> None:
    trt = use(monkeypatch, "10.13")
    logger = process_logger(trt)
    assert process_logger(trt) is logger  # one per process (per module)
    with collect_errors() as outer:
        logger.log(trt.ILogger.ERROR, "first")
        with collect_errors() as inner:
            logger.log(trt.ILogger.INTERNAL_ERROR, "second")
            logger.log(trt.ILogger.WARNING, "not an error")
        logger.log(trt.ILogger.ERROR, "third")
    logger.log(trt.ILogger.ERROR, "nobody listens")
    assert outer == ["first", "second", "third"] and inner == ["second"]


@pytest.mark.parametrize("version", VERSIONS)
def test_parse_errors_name_node_and_operator(monkeypatch, onnx_file: Path, version: str) -> None:
    trt = use(monkeypatch, version, parse_errors=[(3, "conv_3a", "Conv", "bad pads")])
    with pytest.raises(BninceptionError, match=r"could not parse .*model\.folded\.onnx:\n  node 3 'conv_3a' "
                                               r"\(Conv\): bad pads \[ErrorCode\.UNSUPPORTED_NODE\]"):
        build_plan(onnx_file, spec_for(trt), INPUT)
    trt = use(monkeypatch, version, parse_logs=["ModelImporter.cpp:123: unsupported opset 99"])
    with pytest.raises(BninceptionError, match="unsupported opset 99"):  # no error record, but a logged error
        build_plan(onnx_file, spec_for(trt), INPUT)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("blob", [b"FOREIGN timing cache of another TensorRT", b"OTHERGPU cache"])
def test_unusable_timing_cache_is_replaced(monkeypatch, onnx_file: Path, tmp_path: Path, version: str,
                                           blob: bytes) -> None:
    trt = use(monkeypatch, version)
    cache = tmp_path / "timing.cache"
    cache.write_bytes(blob)
    plan, policy = build_plan(onnx_file, spec_for(trt), INPUT, cache)
    assert plan and policy["timing_cache"] == "used"
    assert cache.read_bytes() == b"CACHE"  # a fresh cache replaced the unusable one


@pytest.mark.parametrize("version", VERSIONS)
def test_same_cc_is_refused_before_any_work_where_tensorrt_lacks_it(monkeypatch, onnx_file: Path,
                                                                    version: str) -> None:
    trt = use(monkeypatch, version)
    if version == "10.8":
        with pytest.raises(BninceptionError, match=r"same_cc needs TensorRT 10\.9 or later"):
            build_plan(onnx_file, spec_for(trt, hardware_compatibility="same_cc"), INPUT)
        assert trt._state.events == []  # no Builder was created
    else:
        build_plan(onnx_file, spec_for(trt, hardware_compatibility="same_cc"), INPUT)
        build = next(e for e in trt._state.events if e[0] == "build")
        assert build[2] == trt.HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY


# -- the runner's set-up ---------------------------------------------------------------------------------
@pytest.fixture
def plan_file(tmp_path: Path) -> Path:
    spec = EngineSpec("fp16", BatchProfile(1, 8, 32), "ab" * 32, HostEnv("10.13.0.35", "NVIDIA A10", "8.6"))
    plan = b"fake plan bytes"
    import hashlib

    sidecar = Sidecar(key=spec.key(), spec=spec, plan_sha256=hashlib.sha256(plan).hexdigest(), plan_bytes=len(plan),
                      build_seconds=1.0, built_at="2026-01-01T00:00:00+0000", input_name="input",
                      input_shape=(1, 4, 4))
    plan_path, _ = write_engine(tmp_path / "engines", sidecar, plan)
    return plan_path


def fake_cuda(monkeypatch: pytest.MonkeyPatch, trt) -> list[int | None]:
    """torch.cuda.device as a context manager that sets the fake's "current device"; no real GPU needed."""
    import torch

    current: list[int | None] = [None]

    @contextlib.contextmanager
    def device(dev):
        previous, current[0] = current[0], torch.device(dev).index
        try:
            yield
        finally:
            current[0] = previous

    monkeypatch.setattr(torch.cuda, "device", device)
    monkeypatch.setattr(torch.cuda, "Stream", lambda device=None: ("stream", device))
    trt._state.current_device = lambda: current[0]
    return current


@pytest.mark.parametrize("version", VERSIONS)
def test_runner_deserializes_and_creates_its_context_on_the_requested_gpu(monkeypatch, plan_file: Path,
                                                                          version: str) -> None:
    import bninception.engines.runner as runner_module

    trt = use(monkeypatch, version)
    monkeypatch.setattr(runner_module, "require_tensorrt", lambda: trt)
    current = fake_cuda(monkeypatch, trt)
    runner = runner_module.TensorRTRunner(plan_file, device=1, check_host=False)
    assert ("deserialize", 1) in trt._state.events
    assert ("create_execution_context", 1) in trt._state.events
    assert current[0] is None  # the previous device is current again
    spec = runner.input_spec
    assert (spec.name, spec.channels, spec.height, spec.width, spec.min_batch, spec.max_batch) == \
        ("input", 1, 4, 4, 1, 32)


@pytest.mark.parametrize("version", VERSIONS)
def test_runner_reports_why_tensorrt_could_not_deserialize(monkeypatch, plan_file: Path, version: str) -> None:
    import bninception.engines.runner as runner_module

    trt = use(monkeypatch, version, deserialize_errors=["Serialization assertion: version tag mismatch"])
    monkeypatch.setattr(runner_module, "require_tensorrt", lambda: trt)
    fake_cuda(monkeypatch, trt)
    with pytest.raises(BninceptionError, match=r"could not deserialize .*\.plan: Serialization assertion: "
                                               r"version tag mismatch"):
        runner_module.TensorRTRunner(plan_file, device=0, check_host=False)
