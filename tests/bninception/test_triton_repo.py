"""``triton-repo``: config.pbtxt parsed against Triton's ModelConfig schema, files, engine pick-up."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from google.protobuf import json_format, text_format
from run_helpers import recorded
from serve_helpers import LABELS
from tritonclient.grpc import model_config_pb2

from bninception.cli import main
from bninception.core.errors import BninceptionError
from bninception.core.files import sha256_file
from bninception.core.rundir import RunDir
from bninception.triton_repo import write_repository


@pytest.fixture
def run_dir(tmp_path: Path, serve_model_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(serve_model_path, run / "model.folded.onnx")
    recorded(RunDir(run), "fold", "model.folded.onnx")
    return run


def parse_config(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_onnx_model_repository(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "repo"
    report = write_repository(run_dir, out, max_batch=16, max_delay_us=2500, instances=2)
    folder = out / "bninception_onnx"
    config = parse_config(folder / "config.pbtxt")
    assert config.name == "bninception_onnx" and config.backend == "onnxruntime"
    assert config.max_batch_size == 16
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [
        ("data", model_config_pb2.TYPE_FP32, [1, 32, 32])]
    outputs = [(o.name, list(o.dims), o.label_filename) for o in config.output]
    assert outputs == [("logits", [10], "labels.txt")]
    assert config.dynamic_batching.max_queue_delay_microseconds == 2500
    assert [(g.count, g.kind) for g in config.instance_group] == [
        (2, model_config_pb2.ModelInstanceGroup.KIND_AUTO)]
    assert config.version_policy.latest.num_versions == 1
    assert sha256_file(folder / "1" / "model.onnx") == sha256_file(run_dir / "model.folded.onnx")
    assert (folder / "labels.txt").read_text().splitlines() == LABELS
    assert not (out / "bninception_trt").exists() and "build-engine" in report["tensorrt"]
    with pytest.raises(BninceptionError, match="is a file"):
        write_repository(run_dir, run_dir / "model.folded.onnx")
    assert not list(out.rglob("*.tmp"))  # atomic writes left nothing behind


def _build_engine(run_dir: Path, max_batch: int = 8) -> str:
    """A plan made by the real build-engine stage with a stand-in compiler (no GPU here)."""
    from engine_fakes import A10, FakeBuilder

    from bninception.core.rundir import RunDir
    from bninception.engines.stages import build_engine_stage

    result = build_engine_stage(RunDir(run_dir), "fp32", max_batch=max_batch, env=A10, builder=FakeBuilder())
    return result.summary["key"]


def test_tensorrt_plan_is_exported_with_its_profile(run_dir: Path, tmp_path: Path) -> None:
    key = _build_engine(run_dir)
    out = tmp_path / "repo"
    report = write_repository(run_dir, out, max_batch=32)
    folder = out / "bninception_trt"
    config = parse_config(folder / "config.pbtxt")
    assert config.platform == "tensorrt_plan" and config.max_batch_size == 8  # capped by the profile
    assert [g.kind for g in config.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_GPU]
    assert list(config.input[0].dims) == [1, 32, 32] and config.output[0].name == "logits"
    assert (folder / "1" / "model.plan").read_bytes() == (run_dir / "engines" / f"{key}.plan").read_bytes()
    assert report["models"][1]["engine"] == key and report["models"][1]["tensorrt_version"] == "10.8.0.43"
    assert "TensorRT 10.8.0.43 on NVIDIA A10" in report["tensorrt"]


def test_stale_or_broken_engine_is_refused(run_dir: Path, tmp_path: Path) -> None:
    """An engine built from an older model.folded.onnx must not be shipped beside the new ONNX."""
    import onnx

    key = _build_engine(run_dir)
    model = onnx.load(str(run_dir / "model.folded.onnx"))
    model.doc_string = "retrained"
    onnx.save(model, str(run_dir / "model.folded.onnx"))
    with pytest.raises(BninceptionError, match=r"model\.folded\.onnx changed after stage fold wrote it"):
        write_repository(run_dir, tmp_path / "changed", max_batch=32)  # never packaged unchecked
    assert not (tmp_path / "changed").exists()
    recorded(RunDir(run_dir), "fold", "model.folded.onnx")  # the fold stage re-ran on a retrained model
    report = write_repository(run_dir, tmp_path / "stale", max_batch=32)
    assert not (tmp_path / "stale" / "bninception_trt").exists()
    assert "no TensorRT model" in report["tensorrt"] and key in report["tensorrt"] and "stale" in report["tensorrt"]
    fresh = _build_engine(run_dir)
    (run_dir / "engines" / f"{fresh}.plan").write_bytes(b"truncated")
    report = write_repository(run_dir, tmp_path / "broken", max_batch=32)
    assert not (tmp_path / "broken" / "bninception_trt").exists() and fresh in report["tensorrt"]


def test_missing_precision_names_the_file_and_command(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(BninceptionError, match=r"model\.int8\.onnx is missing.*calibrate --run .* int8"):
        write_repository(run_dir, tmp_path / "repo", precision="int8")


def test_cli_json(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "repo"
    assert main(["triton-repo", "--run", str(run_dir), "-o", str(out), "--json", "--max-batch", "4"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["models"][0]["max_batch_size"] == 4
    assert parse_config(out / "bninception_onnx" / "config.pbtxt").max_batch_size == 4
    assert main(["triton-repo", "--run", str(tmp_path / "nope"), "-o", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_server_config_endpoint_matches_triton_schema(serve_model_path: Path) -> None:
    from bninception.serve.app import create_app

    app = create_app(serve_model_path, max_batch=8, max_delay_ms=3)
    try:
        config = json_format.ParseDict(app.state.server.triton_config(), model_config_pb2.ModelConfig())
    finally:
        app.state.server.close()
    assert config.max_batch_size == 8 and config.dynamic_batching.max_queue_delay_microseconds == 3000
    assert [o.name for o in config.output] == ["logits", "probabilities"]
