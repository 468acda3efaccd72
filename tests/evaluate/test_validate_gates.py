"""validate: gate arithmetic, every artifact of the demo run PASSes, a corrupted one FAILs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from run_helpers import copy_run, recorded
from validate_helpers import perturb_final_bias

from bninception.core.rundir import RunDir
from bninception.evaluate.validate import ValidationReport, validate_run, validate_stage


@pytest.fixture(scope="module")
def full_run(onnx_run: RunDir, tmp_path_factory: pytest.TempPathFactory) -> RunDir:
    return copy_run(onnx_run, tmp_path_factory.mktemp("validate") / "run")


@pytest.fixture(scope="module")
def full_report(full_run: RunDir) -> ValidationReport:
    return validate_run(full_run)


def test_every_demo_artifact_passes(full_report: ValidationReport, full_run: RunDir) -> None:
    report = full_report
    kinds = [r.kind for r in report.rows]
    assert kinds[:2] == ["pytorch-ema", "pytorch"]
    assert {"onnx", "onnx-folded", "onnx-fp16", "onnx-int8"} <= set(kinds)
    assert "onnx-int8-cpu" in kinds  # the demo's CPU INT8 layout passes its gate, so it exists
    assert report.passed, report.table()
    assert report.data["split"] == "test" and report.data["images"] > 300 and report.data["classes"] == 10
    reference = report.row("pytorch")
    assert reference is not None and reference.status == "REF" and reference.comparison is not None
    assert reference.comparison.accuracy is not None and reference.comparison.accuracy > 0.9
    assert reference.comparison.top5 is not None and reference.comparison.top5 >= reference.comparison.accuracy
    for kind in ("onnx", "onnx-folded"):
        row = report.row(kind)
        assert row is not None and row.status == "PASS" and row.optimization == "disable"
        cmp = row.comparison
        assert cmp is not None and cmp.max_abs_diff is not None and cmp.max_abs_diff <= 1e-4
        assert cmp.top1_agreement == 1.0
    ema = report.row("pytorch-ema")
    assert ema is not None and ema.status == "INFO" and not ema.gate and "population" in ema.note
    saved = json.loads(full_run.path("validate.json").read_text())
    assert saved["passed"] is True and len(saved["rows"]) == len(report.rows)
    table = report.table()
    assert "ORT FP32 folded" in table and "overall: PASS" in table


def test_corrupted_bias_fails_its_gate(full_run: RunDir, tmp_path: Path) -> None:
    run = copy_run(full_run, tmp_path / "broken")
    perturb_final_bias(run.path("model.folded.onnx"), delta=1e-3)
    tampered = validate_run(run, include_engines=False, limit=64).row("onnx-folded")
    assert tampered is not None and tampered.status == "ERROR"  # changed after its stage: never run, marked
    assert "changed after stage fold wrote it" in tampered.failures[0]
    recorded(run, "fold", "model.folded.onnx")  # as if the fold stage itself had written the broken file
    report = validate_run(run, include_engines=False, limit=64)
    row = report.row("onnx-folded")
    assert row is not None and row.status == "FAIL"
    assert row.comparison is not None and row.comparison.max_abs_diff == pytest.approx(1e-3, rel=0.05)
    assert report.row("onnx").status == "PASS"  # type: ignore[union-attr]
    assert not report.passed and "model.folded.onnx" in report.failures()[0]


def test_cli_exit_status_and_json(full_run: RunDir, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    from bninception.cli import main

    run = copy_run(full_run, tmp_path / "cli")
    for name in ("model.fp16.onnx", "model.int8.onnx", "model.int8.cpu.onnx", "checkpoint.pt"):
        run.path(name).unlink(missing_ok=True)
    assert main(["validate", "--run", str(run.root), "--json", "--limit", "64"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["passed"] is True and document["data"]["images"] == 64
    perturb_final_bias(run.path("model.onnx"), delta=50.0, index=3)  # class 3 wins everywhere
    recorded(run, "export", "model.onnx")
    assert main(["validate", "--run", str(run.root), "--limit", "64"]) == 1
    captured = capsys.readouterr()
    assert "FAIL" in captured.out and "agreement" in captured.err


def test_stage_skips_when_fresh(full_run: RunDir, tmp_path: Path) -> None:
    run = copy_run(full_run, tmp_path / "stage")
    for name in ("model.fp16.onnx", "model.int8.onnx", "model.int8.cpu.onnx", "checkpoint.pt"):
        run.path(name).unlink(missing_ok=True)  # 32 images: too few for the 99% INT8 agreement gate
    first = validate_stage(run, limit=32)
    record = run.manifest()["stages"]["validate"]
    assert first.status == "done" and first.value.passed and "model.folded.onnx" in record["inputs"]
    assert record["outputs"].keys() == {"validate.json"}
    again = validate_stage(run, limit=32)  # fresh: re-read from validate.json
    assert again.skipped and again.value.to_dict()["rows"] == first.value.to_dict()["rows"]
    perturb_final_bias(run.path("model.onnx"), delta=1.0)  # an input changed: validated again
    recorded(run, "export", "model.onnx")
    third = validate_stage(run, limit=32)
    assert third.status == "done" and not third.value.passed
    assert third.value.row("onnx").status == "FAIL"
