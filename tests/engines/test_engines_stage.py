"""The build-engine stage's reuse rules, files and manifest, with an injected plan builder.

The real builder needs TensorRT and a GPU (tests/engines/test_engines_gpu.py); here a builder that
returns deterministic bytes stands in for it, so the stage's own logic is what is tested.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from engine_fakes import A10, H100, T4, FakeBuilder, recorded_onnx
from onnx import TensorProto

from bninception.cli import main
from bninception.core.errors import BninceptionError
from bninception.core.rundir import RunDir
from bninception.engines import available, list_engines
from bninception.engines.build import format_parser_errors
from bninception.engines.detect import load_tensorrt
from bninception.engines.key import stage_name
from bninception.engines.profile import read_onnx_input
from bninception.engines.stages import build_engine_stage
from bninception.engines.store import read_plan, read_sidecar, select_engine


@pytest.fixture
def run(tmp_path: Path) -> RunDir:
    run = RunDir(tmp_path / "run")
    recorded_onnx(run, "model.folded.onnx")
    recorded_onnx(run, "model.fp16.onnx", classes=11)
    return run


def test_build_writes_plan_sidecar_and_manifest(run: RunDir, capsys) -> None:
    builder = FakeBuilder()
    summary = build_engine_stage(run, "fp32", env=A10, builder=builder).to_dict()
    assert summary["engine"] == "built" and len(builder.calls) == 1
    key = summary["key"]
    plan, side = run.path(f"engines/{key}.plan"), run.path(f"engines/{key}.json")
    sidecar = read_sidecar(side)
    assert read_plan(plan, sidecar) == f"PLAN {key} input".encode()
    assert sidecar.spec.onnx_sha256 == run.sha256("model.folded.onnx")
    assert sidecar.spec.env == A10 and sidecar.input_shape == (1, 4, 4)
    record = run.manifest()["stages"][stage_name("fp32")]
    assert record["inputs"] == {"model.folded.onnx": run.sha256("model.folded.onnx")}
    assert set(record["outputs"]) == {f"engines/{key}.plan", f"engines/{key}.json", f"engines/{key}.ctx.onnx"}
    assert run.path(f"engines/{key}.ctx.onnx").is_file() and summary["context_model"].endswith(".ctx.onnx")
    assert not list(run.path("engines").glob(".*.tmp"))  # atomic writes left nothing behind


def test_second_run_is_skipped_then_force_rebuilds(run: RunDir, caplog) -> None:
    caplog.set_level("INFO")
    builder = FakeBuilder()
    build_engine_stage(run, "fp32", env=A10, builder=builder).to_dict()
    caplog.clear()
    assert build_engine_stage(run, "fp32", env=A10, builder=builder).to_dict()["status"] == "skipped"
    assert "stage build-engine-fp32: up to date, skipped" in caplog.text
    assert build_engine_stage(run, "fp32", env=A10, builder=builder, force=True).to_dict()["engine"] == "built"
    assert len(builder.calls) == 2


def test_lost_manifest_reuses_the_engine_by_key(run: RunDir) -> None:
    builder = FakeBuilder()
    first = build_engine_stage(run, "fp32", env=A10, builder=builder).to_dict()
    run.path("manifest.json").unlink()
    recorded_onnx(run, "model.folded.onnx")  # the earlier stages re-run (same bytes): only engines are lost
    run.path(f"engines/{first['key']}.ctx.onnx").unlink()  # e.g. engines built before the wrapper existed
    again = build_engine_stage(run, "fp32", env=A10, builder=builder).to_dict()
    assert again["engine"] == "reused" and again["key"] == first["key"] and len(builder.calls) == 1
    assert stage_name("fp32") in run.manifest()["stages"]
    assert run.path(f"engines/{first['key']}.ctx.onnx").is_file()  # rewritten from the sidecar


def test_corrupted_plan_is_rebuilt_not_reused(run: RunDir) -> None:
    builder = FakeBuilder()
    key = build_engine_stage(run, "fp32", env=A10, builder=builder).to_dict()["key"]
    run.path(f"engines/{key}.plan").write_bytes(b"garbage")
    assert build_engine_stage(run, "fp32", env=A10, builder=builder).to_dict()["engine"] == "built"
    assert len(builder.calls) == 2


def test_new_onnx_or_other_gpu_or_profile_makes_a_new_engine(run: RunDir) -> None:
    builder = FakeBuilder()
    first = build_engine_stage(run, "fp32", env=A10, builder=builder).to_dict()["key"]
    other_gpu = build_engine_stage(run, "fp32", env=H100, builder=builder).to_dict()["key"]
    profile = build_engine_stage(run, "fp32", env=A10, builder=builder, max_batch=64).to_dict()["key"]
    recorded_onnx(run, "model.folded.onnx", classes=12)
    new_model = build_engine_stage(run, "fp32", env=A10, builder=builder).to_dict()["key"]
    assert len({first, other_gpu, profile, new_model}) == 4 and len(builder.calls) == 4
    assert "1x8x64" in profile


def test_cache_is_shared_between_runs(tmp_path: Path) -> None:
    cache, builder = tmp_path / "cache", FakeBuilder()
    run_a, run_b = RunDir(tmp_path / "a"), RunDir(tmp_path / "b")
    recorded_onnx(run_a, "model.fp16.onnx")
    recorded_onnx(run_b, "model.fp16.onnx")  # identical bytes -> identical key
    built = build_engine_stage(run_a, "fp16", env=A10, builder=builder, cache=cache).to_dict()
    assert (cache / f"{built['key']}.plan").is_file() and (cache / f"{built['key']}.json").is_file()
    fetched = build_engine_stage(run_b, "fp16", env=A10, builder=builder, cache=cache).to_dict()
    assert fetched["engine"] == "cached" and fetched["key"] == built["key"] and len(builder.calls) == 1
    copied = run_b.path(f"engines/{built['key']}.plan")
    assert copied.read_bytes() == (cache / f"{built['key']}.plan").read_bytes()
    # a damaged cache entry is ignored and the engine is built
    run_c = RunDir(tmp_path / "c")
    recorded_onnx(run_c, "model.fp16.onnx")
    (cache / f"{built['key']}.plan").write_bytes(b"truncated")
    assert build_engine_stage(run_c, "fp16", env=A10, builder=builder, cache=cache).to_dict()["engine"] == "built"


def test_missing_source_and_bad_inputs_are_clear_errors(run: RunDir, tmp_path: Path) -> None:
    with pytest.raises(BninceptionError, match=r"model\.int8\.onnx is missing.*calibrate .*--precision int8"):
        build_engine_stage(run, "int8", env=A10, builder=FakeBuilder()).to_dict()
    with pytest.raises(BninceptionError, match="precision must be one of"):
        build_engine_stage(run, "fp8", env=A10, builder=FakeBuilder()).to_dict()
    recorded_onnx(run, "model.folded.onnx", batch=4)
    with pytest.raises(BninceptionError, match="fixed batch of 4"):
        build_engine_stage(run, "fp32", env=A10, builder=FakeBuilder()).to_dict()
    recorded_onnx(run, "model.folded.onnx", elem=TensorProto.FLOAT16)
    with pytest.raises(BninceptionError, match="FLOAT16; the engines take FP32 input"):
        build_engine_stage(run, "fp32", env=A10, builder=FakeBuilder()).to_dict()
    run.path("model.folded.onnx").write_bytes(b"not onnx")
    with pytest.raises(BninceptionError, match="not a readable ONNX model"):
        read_onnx_input(run.path("model.folded.onnx"))


def test_list_and_select_engines(run: RunDir) -> None:
    builder = FakeBuilder()
    fp32 = build_engine_stage(run, "fp32", env=A10, builder=builder).to_dict()["key"]
    fp16 = build_engine_stage(run, "fp16", env=A10, builder=builder).to_dict()["key"]
    h100 = build_engine_stage(run, "fp32", env=H100, builder=builder).to_dict()["key"]
    records = list_engines(run, verify=True)
    assert [r.precision for r in records] == ["fp32", "fp32", "fp16"]
    assert {r.key for r in records} == {fp32, fp16, h100} and all(r.problem is None for r in records)
    assert select_engine(run, "fp32", here=A10).key == fp32
    assert select_engine(run, "fp32", here=H100).key == h100
    assert select_engine(run, "fp32").key == h100  # the one the manifest records last
    run.path(f"engines/{fp16}.plan").write_bytes(b"x")
    damaged = next(r for r in list_engines(run, verify=True) if r.key == fp16)
    assert damaged.problem is not None and "sidecar records" in damaged.problem
    with pytest.raises(BninceptionError, match="no usable fp16 TensorRT engine"):
        select_engine(run, "fp16", here=A10)
    recorded_onnx(run, "model.folded.onnx", classes=3)
    with pytest.raises(BninceptionError, match=r"built from an older model\.folded\.onnx"):
        select_engine(run, "fp32", here=A10)
    build_engine_stage(run, "fp32", env=A10, builder=builder).to_dict()
    with pytest.raises(BninceptionError, match=r"this GPU is Tesla T4 \(compute capability 7\.5\)"):
        select_engine(run, "fp32", here=T4)


def test_parser_errors_are_all_reported() -> None:
    class Err:
        def __init__(self, i: int, name: str, op: str, desc: str) -> None:
            self.i, self.name, self.op, self.text = i, name, op, desc

        def node(self) -> int:
            return self.i

        def node_name(self) -> str:
            return self.name

        def node_operator(self) -> str:
            return self.op

        def desc(self) -> str:
            return self.text

        def code(self) -> str:
            return "ErrorCode.UNSUPPORTED_NODE"

    text = format_parser_errors([Err(3, "conv_3a", "Conv", "bad pads"), Err(7, "", "", "no importer")],
                                "runs/x/model.int8.onnx")
    assert "runs/x/model.int8.onnx" in text
    assert "node 3 'conv_3a' (Conv): bad pads [ErrorCode.UNSUPPORTED_NODE]" in text
    assert "node 7 '<unnamed>' (<unknown op>): no importer" in text


def test_detection_sees_no_real_tensorrt_here() -> None:
    ok, reason = available()
    if load_tensorrt() is None:
        assert not ok and "TensorRT is not installed" in reason
    else:
        assert ok or "CUDA" in reason


def test_detection_recognises_a_module_with_builder(monkeypatch) -> None:
    import sys
    import types

    fake = types.ModuleType("tensorrt")
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    assert load_tensorrt() is None  # a namespace without Builder (what tensorrt-stubs gives)
    fake.Builder = object  # type: ignore[attr-defined]
    assert load_tensorrt() is fake


def test_cli_if_available_and_list(run: RunDir, capsys) -> None:
    if available()[0]:
        pytest.skip("TensorRT and a GPU are present: the skip path is not taken")
    assert main(["build-engine", "--run", str(run.root), "--precision", "all", "--if-available",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "TensorRT" in out["skipped"] and out["engines"] == []
    assert main(["build-engine", "--run", str(run.root)]) == 2
    assert "TensorRT engines need TensorRT" in capsys.readouterr().err
    build_engine_stage(run, "fp16", env=A10, builder=FakeBuilder()).to_dict()
    assert main(["build-engine", "--run", str(run.root), "--list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["engines"]
    assert len(listed) == 1 and listed[0]["info"]["gpu_name"] == "NVIDIA A10" and listed[0]["problem"] is None


def test_importing_engines_stays_light() -> None:
    import subprocess
    import sys

    code = ("import sys, bninception.engines, bninception.commands.build_engine; "
            "print(sorted(m for m in ('torch', 'tensorrt', 'onnx') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_runner_without_tensorrt_names_what_is_missing(run: RunDir) -> None:
    from bninception.engines.runner import TensorRTRunner

    if available()[0]:
        pytest.skip("TensorRT and a GPU are present")
    key = build_engine_stage(run, "fp32", env=A10, builder=FakeBuilder()).to_dict()["key"]
    with pytest.raises(BninceptionError, match=r"a CUDA GPU: TensorRT is not installed"):
        TensorRTRunner(run.path(f"engines/{key}.plan"))
