"""Adopting an INT8 model quantized elsewhere (``calibrate --from``), and rejected artifacts shown by validate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from run_helpers import copy_run

from bninception.calibrate.qdq import check_trt_layout
from bninception.core.errors import BninceptionError, GateFailure
from bninception.core.rundir import RunDir

pytestmark = pytest.mark.slow


@pytest.fixture
def int8_run(onnx_run: RunDir, tmp_path: Path) -> RunDir:
    return copy_run(onnx_run, tmp_path / "run")


def modelopt_style(qdq: onnx.ModelProto) -> onnx.ModelProto:
    """ModelOpt's / a QAT export's layout from ours: FP32 weights -> QuantizeLinear -> DequantizeLinear
    (TensorRT folds them into INT8 weights), and the classifier Gemm left in float with its Q/DQ gone."""
    model = onnx.ModelProto()
    model.CopyFrom(qdq)
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producers = {out: n for n in graph.node for out in n.output}
    gemm = next(n for n in graph.node if n.op_type == "Gemm")
    act_dq, weight_dq = producers[gemm.input[0]], producers[gemm.input[1]]
    gemm.input[0] = producers[act_dq.input[0]].input[0]
    weight = numpy_helper.to_array(inits[weight_dq.input[0]]).astype(np.float32)
    scale = numpy_helper.to_array(inits[weight_dq.input[1]])
    axis = next(a.i for a in weight_dq.attribute if a.name == "axis")
    shape = [1] * weight.ndim
    shape[axis] = -1
    graph.initializer.append(numpy_helper.from_array(weight * scale.reshape(shape), "gemm_w_float"))
    gemm.input[1] = "gemm_w_float"
    dropped = {id(act_dq), id(weight_dq), id(producers[act_dq.input[0]])}
    kept = [n for n in graph.node if id(n) not in dropped]
    for node in [n for n in kept if n.op_type == "DequantizeLinear" and inits.get(n.input[0]) is not None
                 and inits[n.input[0]].data_type == onnx.TensorProto.INT8]:
        levels = numpy_helper.to_array(inits[node.input[0]]).astype(np.float32)
        scale = numpy_helper.to_array(inits[node.input[1]])
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        shape = [1] * levels.ndim
        shape[axis] = -1
        name = node.input[0] + "_fp32"
        graph.initializer.append(numpy_helper.from_array(levels * scale.reshape(shape), name))
        quantized = node.input[0] + "_q"
        kept.insert(kept.index(node), helper.make_node("QuantizeLinear", [name, node.input[1], node.input[2]],
                                                       [quantized], name=node.name + "_q", axis=axis))
        node.input[0] = quantized
    del graph.node[:]
    graph.node.extend(kept)
    used = {i for n in graph.node for i in n.input}
    keep_inits = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep_inits)
    del model.metadata_props[:]  # ModelOpt writes none
    onnx.checker.check_model(model, full_check=True)
    return model


def snapshot(run: RunDir) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run.root.iterdir()) if p.is_file()}


def test_adopts_a_modelopt_style_model_and_validates_it(int8_run: RunDir, tmp_path: Path) -> None:
    from bninception.calibrate.stages import adopt_int8_stage, int8_stage
    from bninception.core.files import sha256_file
    from bninception.evaluate.validate import validate_run

    foreign = modelopt_style(onnx.load(str(int8_run.path("model.int8.onnx"))))
    ours = check_trt_layout(foreign)
    assert ours.errors == []  # FP32 weight -> Q -> DQ is TensorRT's standard input, a float Gemm is advice
    assert any(w.node.endswith("Gemm") and "runs in float" in w.message for w in ours.warnings)
    source = tmp_path / "modelopt.onnx"
    onnx.save(foreign, str(source))

    result = adopt_int8_stage(int8_run, source)
    assert result.status == "done" and result.summary["top1_agreement"] >= 0.99
    assert not int8_run.path("model.int8.cpu.onnx").exists()  # our calibration's file does not outlive it
    record = int8_run.manifest()["stages"]["int8"]["params"]
    assert record["from"] == str(source.resolve()) and record["source_sha256"] == sha256_file(source)
    adopted = onnx.load(str(int8_run.path("model.int8.onnx")))
    assert sum(n.op_type == "QuantizeLinear" for n in adopted.graph.node) > 69
    assert {e.key for e in adopted.metadata_props} >= {"bninception.preprocess"}  # the run's, for serve

    assert int8_stage(int8_run).skipped  # the pipeline keeps the adopted model
    assert adopt_int8_stage(int8_run, source).skipped  # same bytes: up to date
    report = validate_run(int8_run, include_engines=False, providers=["cpu"])
    row = next(r for r in report.rows if r.artifact == "model.int8.onnx")
    assert row.status == "PASS" and report.passed


def test_bad_files_change_nothing(int8_run: RunDir, tmp_path: Path) -> None:
    from bninception.calibrate.stages import adopt_int8_stage

    before = snapshot(int8_run)
    float_model = tmp_path / "float.onnx"
    float_model.write_bytes(int8_run.path("model.folded.onnx").read_bytes())
    text = tmp_path / "notes.onnx"
    text.write_text("not a model")
    other = onnx.load(str(int8_run.path("model.int8.onnx")))
    other.graph.input[0].name = "image"
    for node in other.graph.node:
        node.input[:] = ["image" if i == "data" else i for i in node.input]
    renamed = tmp_path / "renamed.onnx"
    onnx.save(other, str(renamed))
    broken = onnx.load(str(int8_run.path("model.int8.onnx")))
    zp = next(n.input[2] for n in broken.graph.node if n.op_type == "QuantizeLinear")
    init = next(i for i in broken.graph.initializer if i.name == zp)
    init.CopyFrom(numpy_helper.from_array(np.array(5, np.int8), zp))
    nonzero = tmp_path / "nonzero.onnx"
    onnx.save(broken, str(nonzero))
    cases = {float_model: "is not a Q/DQ model", text: "is not an ONNX model", renamed: "has inputs 'image'",
             nonzero: "non-zero zero point", tmp_path / "missing.onnx": "no such file"}
    for path, message in cases.items():
        with pytest.raises(BninceptionError, match=message):
            adopt_int8_stage(int8_run, path)
        assert snapshot(int8_run) == before, path


def test_adopted_model_below_the_gate_is_refused(int8_run: RunDir, tmp_path: Path) -> None:
    from bninception.calibrate.stages import adopt_int8_stage

    before = snapshot(int8_run)
    model = modelopt_style(onnx.load(str(int8_run.path("model.int8.onnx"))))
    first_conv_input = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "data")
    scale = next(i for i in model.graph.initializer if i.name == first_conv_input.input[1])
    scale.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(scale) * 1000, scale.name))  # a coarse input
    path = tmp_path / "coarse.onnx"
    onnx.save(model, str(path))
    with pytest.raises(GateFailure, match="INT8 gate"):
        adopt_int8_stage(int8_run, path)
    assert snapshot(int8_run) == before


def test_a_rejected_artifact_is_shown_with_its_numbers(int8_run: RunDir, capsys: pytest.CaptureFixture) -> None:
    """A CPU-layout file its gate rejected: measured, listed as REJECTED with the reason in validate.json,
    the table, report.md and the last line, and not failing the run (its TensorRT-layout file passed)."""
    import json

    from bninception.cli import main
    from bninception.evaluate.report import write_report

    cpu = onnx.load(str(int8_run.path("model.int8.cpu.onnx")))
    conv = next(n for n in cpu.graph.node if n.op_type in ("QLinearConv", "DequantizeLinear")
                and n.input[0].endswith("_quantized"))
    scale = next(i for i in cpu.graph.initializer if i.name == conv.input[1])
    scale.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(scale) * 3, scale.name))  # wrong weights
    onnx.save(cpu, str(int8_run.path("model.int8.cpu.rejected.onnx")))
    int8_run.path("model.int8.cpu.onnx").unlink()

    assert main(["validate", "--run", str(int8_run.root), "--no-engines", "--providers", "cpu"]) == 0
    out = capsys.readouterr().out
    saved = json.loads(int8_run.path("validate.json").read_text())
    row = next(r for r in saved["rows"] if r["artifact"] == "model.int8.cpu.rejected.onnx")
    assert row["status"] == "REJECTED" and row["comparison"]["top1_agreement"] < 0.99
    assert saved["passed"] and saved["rejected"][0].startswith("model.int8.cpu.rejected.onnx (top-1 agreement")
    assert not any(s["artifact"] == "model.int8.cpu.onnx" for s in saved["skipped"])  # not "not built"
    assert "REJECTED" in out and "overall: PASS; rejected: model.int8.cpu.rejected.onnx (top-1 agreement" in out
    write_report(int8_run)
    assert "rejected: model.int8.cpu.rejected.onnx (top-1 agreement" in int8_run.path("report.md").read_text()
