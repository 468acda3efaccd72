"""engines.store: which of a run's engines may run here (usable / stale / foreign / broken), and reuse across GPUs.

No TensorRT needed: hosts are HostEnv values and plans come from a stand-in builder.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from engine_fakes import A10, H100, RTX3090, T4, FakeBuilder, recorded_onnx

from bninception.core.errors import BninceptionError
from bninception.core.rundir import RunDir
from bninception.engines.detect import HostEnv, probe_host
from bninception.engines.stages import build_engine_stage, stage_name
from bninception.engines.store import (
    BROKEN,
    FOREIGN,
    STALE,
    USABLE,
    classify_engines,
    select_engine,
)

A10_TRT_10_13 = HostEnv("10.13.0.35", "NVIDIA A10", "8.6")


@pytest.fixture
def run(tmp_path: Path) -> RunDir:
    run = RunDir(tmp_path / "run")
    recorded_onnx(run, "model.folded.onnx")
    recorded_onnx(run, "model.fp16.onnx", classes=11)
    recorded_onnx(run, "model.int8.onnx", classes=12)
    return run


def states(run: RunDir, here: HostEnv | None, **kwargs) -> dict[str, tuple[str, str]]:
    return {s.key: (s.state, s.reason) for s in classify_engines(run, here, **kwargs)}


def test_classification_usable_stale_foreign_broken(run: RunDir) -> None:
    builder = FakeBuilder()
    fp32 = build_engine_stage(run, "fp32", env=A10, builder=builder).to_dict()["key"]
    fp16 = build_engine_stage(run, "fp16", env=A10, builder=builder).to_dict()["key"]
    int8 = build_engine_stage(run, "int8", env=A10, builder=builder).to_dict()["key"]
    h100 = build_engine_stage(run, "fp32", env=H100, builder=builder).to_dict()["key"]
    assert states(run, A10) == {fp32: (USABLE, ""), fp16: (USABLE, ""), int8: (USABLE, ""),
                                h100: (FOREIGN, states(run, A10)[h100][1])}
    assert "built for NVIDIA H100" in states(run, A10)[h100][1]

    recorded_onnx(run, "model.fp16.onnx", classes=3)  # a newer FP16 model
    run.path(f"engines/{int8}.plan").write_bytes(b"truncated")
    result = states(run, A10)
    assert result[fp16] == (STALE, "built from an older model.fp16.onnx")
    assert result[int8][0] == BROKEN and "sidecar records" in result[int8][1]
    assert result[fp32] == (USABLE, "")

    other_trt = states(run, A10_TRT_10_13)
    assert other_trt[fp32][0] == FOREIGN and "TensorRT 10.8.0.43" in other_trt[fp32][1] \
        and "10.13.0.35" in other_trt[fp32][1]
    run.path("model.folded.onnx").unlink()
    assert states(run, A10)[fp32] == (STALE, "its source model.folded.onnx is gone")


def test_classification_without_tensorrt_lists_but_never_offers_engines(run: RunDir) -> None:
    fp32 = build_engine_stage(run, "fp32", env=A10, builder=FakeBuilder()).to_dict()["key"]
    here, reason = probe_host()
    if here is not None:
        pytest.skip("this host has TensorRT and a GPU")
    result = classify_engines(run, None, host_reason=reason)
    assert [(s.key, s.state) for s in result] == [(fp32, FOREIGN)]
    assert "TensorRT is not installed" in result[0].reason
    listed = result[0].to_dict()
    assert listed["state"] == FOREIGN and listed["info"]["gpu_name"] == "NVIDIA A10"
    assert listed["context_model"] == str(run.path(f"engines/{fp32}.ctx.onnx"))


def usable(run: RunDir, here: HostEnv, precision: str | None = None) -> set[str]:
    return {s.key for s in classify_engines(run, here, precision=precision) if s.usable}


def test_select_engine_prefers_the_manifest_record_and_filters_precision(run: RunDir) -> None:
    builder = FakeBuilder()
    first = build_engine_stage(run, "fp32", env=A10, builder=builder).to_dict()["key"]
    fp16 = build_engine_stage(run, "fp16", env=A10, builder=builder).to_dict()["key"]
    wider = build_engine_stage(run, "fp32", env=A10, builder=builder, max_batch=64).to_dict()["key"]  # recorded last
    assert usable(run, A10) == {wider, first, fp16} and usable(run, A10, "fp16") == {fp16}
    assert usable(run, H100) == set()
    assert select_engine(run, "fp32", A10).key == wider


def test_select_engine_explains_why_none_fits(run: RunDir) -> None:
    build_engine_stage(run, "fp32", env=A10, builder=FakeBuilder()).to_dict()
    with pytest.raises(BninceptionError, match=r"no usable fp32 TensorRT engine \(fp32-.*: it was built for "
                                               r"NVIDIA A10 .* this GPU is Tesla T4"):
        select_engine(run, "fp32", T4)
    with pytest.raises(BninceptionError, match="no usable int8 TensorRT engine; run `bninception build-engine"):
        select_engine(run, "int8", A10)


@pytest.mark.parametrize(("level", "builder_host", "other_host"), [
    ("ampere_plus", A10, H100),
    ("ampere_plus", H100, RTX3090),
    ("same_cc", A10, RTX3090),
])
def test_hardware_compatible_engine_is_reused_on_another_gpu(run: RunDir, level: str, builder_host: HostEnv,
                                                            other_host: HostEnv) -> None:
    builder = FakeBuilder()
    built = build_engine_stage(run, "fp16", env=builder_host, builder=builder, hardware_compatibility=level).to_dict()
    elsewhere = build_engine_stage(run, "fp16", env=other_host, builder=builder, hardware_compatibility=level).to_dict()
    assert elsewhere["key"] == built["key"] and elsewhere["status"] == "skipped" and len(builder.calls) == 1
    run.forget(stage_name("fp16"))  # e.g. the run folder copied to another machine without the engine's record
    assert build_engine_stage(run, "fp16", env=other_host, builder=builder,
                              hardware_compatibility=level).to_dict()["engine"] == "reused"
    assert len(builder.calls) == 1
    assert usable(run, other_host) == {built["key"]}
    assert select_engine(run, "fp16", other_host).key == built["key"]


def test_hardware_compatible_engines_still_refuse_gpus_they_cannot_run_on(run: RunDir) -> None:
    builder = FakeBuilder()
    same_cc = build_engine_stage(run, "fp16", env=A10, builder=builder,
                                 hardware_compatibility="same_cc").to_dict()["key"]
    assert build_engine_stage(run, "fp16", env=H100, builder=builder,
                              hardware_compatibility="same_cc").to_dict()["key"] != same_cc  # 9.0 is another plan
    assert states(run, T4)[same_cc][0] == FOREIGN
    ampere = build_engine_stage(run, "fp16", env=A10, builder=builder,
                                hardware_compatibility="ampere_plus").to_dict()["key"]
    assert states(run, T4)[ampere][0] == FOREIGN and "7.5" in states(run, T4)[ampere][1]
    with pytest.raises(BninceptionError, match="cannot build a ampere_plus engine on this host"):
        build_engine_stage(run, "fp16", env=T4, builder=builder, hardware_compatibility="ampere_plus").to_dict()
