"""export / fold stages on a run directory, the two CLI commands, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from random_bn import save_random_model
from run_helpers import recorded

from bninception.cli import main
from bninception.core.errors import GateFailure
from bninception.core.preprocess import Preprocess
from bninception.core.rundir import RunDir
from bninception.export import stages
from bninception.model.architecture import ModelConfig

DEMO = ModelConfig(num_classes=10, in_channels=1, width=0.25)
GRAY = Preprocess(size=32, resize=32, channel_order="GRAY", mean=(0.3,), std=(0.3,))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run with model.pt, then export + fold through the CLI (shared by the tests below)."""
    root = tmp_path_factory.mktemp("run")
    save_random_model(str(root / "model.pt"), DEMO, GRAY, seed=5)
    assert main(["export", "--run", str(root)]) == 0
    assert main(["fold", "--run", str(root)]) == 0
    return root


def test_stages_write_record_and_skip(run_dir: Path) -> None:
    run = RunDir(run_dir)
    manifest = run.manifest()
    assert set(manifest["stages"]) >= {"export", "fold"}
    assert manifest["stages"]["export"]["inputs"]["model.pt"] == run.sha256("model.pt")
    assert manifest["stages"]["fold"]["inputs"]["model.onnx"] == run.sha256("model.onnx")
    meta = {p.key: p.value for p in onnx.load(str(run_dir / "model.onnx")).metadata_props}
    assert meta["bninception.source_sha256"] == run.sha256("model.pt")
    folded = onnx.load(str(run_dir / "model.folded.onnx"))
    assert not any(n.op_type == "BatchNormalization" for n in folded.graph.node)
    report = json.loads((run_dir / "fold_report.json").read_text())
    assert report["bn_before"] == 69 and report["bn_after"] == 0 and report["folded"]["Conv"] == 69
    assert report["parity"]["max_abs_diff"] <= 1e-4 and "photographs" in report["parity"]["source"]
    assert stages.export_stage(run).skipped and stages.fold_stage(run).skipped


def test_cli_json_and_force(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["fold", "--run", str(run_dir), "--force", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)  # exactly one JSON document on stdout
    assert summary["status"] == "done" and summary["bn_after"] == 0 and summary["folded"] == 69
    assert summary["parity"]["max_abs_diff"] <= 1e-4
    assert main(["export", "--run", str(run_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "skipped"


def test_export_gate_failure_writes_nothing(run_dir: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    run = RunDir(tmp_path)
    (tmp_path / "model.pt").write_bytes((run_dir / "model.pt").read_bytes())
    recorded(run, "population", "model.pt")

    class Shifted(stages.TorchRunner):  # a reference 1e-3 away: the FP32 gate must refuse the export
        def run(self, batch: np.ndarray) -> np.ndarray:
            return super().run(batch) + 1e-3

    monkeypatch.setattr(stages, "TorchRunner", Shifted)
    with pytest.raises(GateFailure, match="max abs logit diff"):
        stages.export_stage(run)
    assert not (tmp_path / "model.onnx").exists()
    assert "export" not in run.manifest()["stages"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "manifest.json", "model.pt"]  # and its lock


def test_export_missing_model_pt(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--run", str(tmp_path)]) == 2
    assert "model.pt is missing" in capsys.readouterr().err


# -- fold IN.onnx -o OUT.onnx on arbitrary files ---------------------------------------------------
def _conv_bn(path: Path, with_bn: bool = True) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv")]
    if with_bn:
        for name, value in [("s", rng.uniform(0.5, 1.5, 4)), ("b", rng.normal(size=4)),
                            ("m", rng.normal(size=4)), ("v", rng.uniform(0.5, 2, 4))]:
            inits.append(numpy_helper.from_array(value.astype(np.float32), name))
        nodes.append(helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["y"], name="bn"))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", 1, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y" if with_bn else "c", 1, ["N", 4, 6, 6])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    onnx.save(model, str(path))
    return model


def test_fold_file_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "net.onnx"
    _conv_bn(src)
    assert main(["fold", str(src), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    out = tmp_path / "net.folded.onnx"
    assert payload["output"] == str(out) and payload["bn_after"] == 0 and payload["folded"]["Conv"] == 1
    assert payload["parity"]["checked"] and payload["parity"]["max_abs_diff"] <= 1e-5
    assert [n.op_type for n in onnx.load(str(out)).graph.node] == ["Conv"]
    assert main(["fold", str(src), "-o", str(tmp_path / "x.onnx")]) == 0
    assert "BatchNormalization nodes: 1 -> 0" in capsys.readouterr().err


def _external(path: Path) -> None:
    model = _conv_bn(path)
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location="net.data", size_threshold=0)


@pytest.mark.parametrize("kind,message", [
    ("not-onnx", "not an ONNX model"), ("truncated", "not an ONNX model"), ("empty", "empty"),
    ("external", "external data"), ("missing", "does not exist"), ("out-is-dir", "is a directory"),
])
def test_fold_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, message: str) -> None:
    src = tmp_path / "net.onnx"
    if kind == "not-onnx":
        src.write_bytes(b"\x89PNG\r\n\x1a\n not a model at all" * 10)
    elif kind == "truncated":
        _conv_bn(src)
        data = src.read_bytes()
        src.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        src.write_bytes(b"")
    elif kind == "external":
        _external(src)
    out = tmp_path / "out.onnx"
    if kind == "out-is-dir":
        _conv_bn(src)
        out.mkdir()
        (out / "keep").write_bytes(b"previous")
        out = out / "keep"
    else:
        out.write_bytes(b"previous")
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["fold", str(src), "-o", str(out.parent if kind == "out-is-dir" else out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_fold_model_without_batchnorm_is_written_unchanged(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    """A script folding a model zoo must not stop at a model with nothing to fold: exit 0, said so."""
    src, out = tmp_path / "net.onnx", tmp_path / "out.onnx"
    model = _conv_bn(src, with_bn=False)
    assert main(["fold", str(src), "-o", str(out)]) == 0
    assert "no BatchNormalization nodes: written unchanged" in capsys.readouterr().err
    written = onnx.load(str(out))
    assert [n.op_type for n in written.graph.node] == ["Conv"]
    assert written.graph.initializer[0].raw_data == model.graph.initializer[0].raw_data


def test_fold_gate_failure_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A wrong fold (simulated) is caught by the parity check: exit 1, no output file."""
    import bninception.export.fold as fold_module

    src = tmp_path / "net.onnx"
    _conv_bn(src)
    real = fold_module.fold_batchnorm

    def broken(model: onnx.ModelProto) -> tuple[onnx.ModelProto, object]:
        folded, report = real(model)
        weight = next(t for t in folded.graph.initializer if t.name == "w")
        weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 1.01, "w"))
        return folded, report

    monkeypatch.setattr(fold_module, "fold_batchnorm", broken)
    assert main(["fold", str(src)]) == 1
    assert "FAIL: fold parity" in capsys.readouterr().err
    assert not (tmp_path / "net.folded.onnx").exists()


def test_fold_argument_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fold"]) == 2
    assert main(["fold", "a.onnx", "--run", str(tmp_path)]) == 2
    assert "either IN.onnx or --run" in capsys.readouterr().err
    assert main(["fold", "--run", str(tmp_path)]) == 2
    assert "model.onnx is missing" in capsys.readouterr().err


def test_fold_stage_without_batchnorm(tmp_path: Path) -> None:
    """A run of the no-BN model (batchnorm=False) still gets model.folded.onnx (nothing to fold)."""
    save_random_model(str(tmp_path / "model.pt"), ModelConfig(num_classes=10, in_channels=1, width=0.25,
                                                               batchnorm=False), GRAY)
    run = RunDir(tmp_path)
    assert stages.export_stage(run).summary["bn_nodes"] == 0
    summary = stages.fold_stage(run).summary
    assert summary["bn_before"] == 0 and summary["folded"] == 0 and summary["parity"]["max_abs_diff"] == 0
    assert (tmp_path / "model.folded.onnx").read_bytes() == (tmp_path / "model.onnx").read_bytes()
