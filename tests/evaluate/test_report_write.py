"""report: report.md / report.json / PNG figures from a run's files, and the pieces it can miss."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from run_helpers import copy_run

from bninception.core.rundir import RunDir

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def reported_run(onnx_run: RunDir, tmp_path_factory: pytest.TempPathFactory) -> tuple[RunDir, list[Path]]:
    from bninception.evaluate.bench import bench_stage
    from bninception.evaluate.report import report_stage
    from bninception.evaluate.validate import validate_stage

    run = copy_run(onnx_run, tmp_path_factory.mktemp("report") / "run")
    validate_stage(run)
    bench_stage(run, batch_sizes=(1, 2), min_seconds=0.01, max_seconds=0.05)
    result = report_stage(run)
    assert result.status == "done"
    return run, result.value


def test_report_has_every_section_and_figure(reported_run: tuple[RunDir, list[Path]]) -> None:
    run, paths = reported_run
    names = {p.name for p in paths}
    assert {"report.md", "report.json", "training_curves.png", "bn_statistics.png",
            "validate_accuracy.png"} <= names
    for name in ("training_curves.png", "bn_statistics.png", "validate_accuracy.png", "bench_throughput.png"):
        width, height = _png_size(run.path(name))
        assert width > 400 and height > 250
    md = run.path("report.md").read_text()
    for heading in ("## Training", "## Population statistics", "## BatchNorm folding", "## Validation",
                    "## Benchmark", "## Artifacts"):
        assert heading in md
    assert "## INT8 calibration" in md and "| method |" in md
    assert "Validation: **PASS**" in md and "| ORT FP32 folded | model.folded.onnx |" in md
    fold = json.loads(run.path("fold_report.json").read_text())
    assert f"| BatchNormalization nodes | {fold['bn_before']} | {fold['bn_after']} |" in md
    document = json.loads(run.path("report.json").read_text())
    metrics = json.loads(run.path("metrics.json").read_text())
    assert document["passed"] is True
    assert len(document["training"]["history"]) == len(metrics["train"]["history"])
    assert document["population"]["layer_differences"] == metrics["population"]["layer_differences"]
    assert document["bench"]["results"] and document["validate"]["rows"]


def test_report_stage_is_skipped_when_fresh(reported_run: tuple[RunDir, list[Path]]) -> None:
    from bninception.evaluate.report import report_stage

    run, _ = reported_run
    before = run.path("report.md").stat().st_mtime_ns
    assert report_stage(run).skipped
    assert run.path("report.md").stat().st_mtime_ns == before
    record = run.manifest()["stages"]["bench"]  # the report must not rewrite bench's plot
    assert run.is_fresh("bench", record["params"], list(record["inputs"]), list(record["outputs"]))


def test_report_of_a_bare_run_says_what_is_missing(demo_run: RunDir, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from bninception.cli import main

    run = RunDir(tmp_path / "bare")
    for name in ("model.pt", "metrics.json", "manifest.json"):
        run.path(name).write_bytes(demo_run.path(name).read_bytes())
    assert main(["report", "--run", str(run.root)]) == 0
    assert "report.md" in capsys.readouterr().out
    md = run.path("report.md").read_text()
    assert "Not validated yet" in md and "Not benchmarked yet" in md and "No fold report" in md
    assert not run.path("validate_accuracy.png").exists()


def test_without_matplotlib_the_numbers_stand_and_no_stale_figure_stays(
        reported_run: tuple[RunDir, list[Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The GPU host of the GPU check has no matplotlib: bench and report still finish, without figures."""
    import sys

    from bninception.evaluate.bench import bench_stage
    from bninception.evaluate.report import report_stage

    run = copy_run(reported_run[0], tmp_path / "run")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    bench = bench_stage(run, batch_sizes=(1,), min_seconds=0.01, max_seconds=0.05)
    assert bench.status == "done" and run.path("bench.json").is_file()
    assert not run.path("bench_throughput.png").exists()
    report = report_stage(run, force=True)
    markdown = run.path("report.md").read_text()
    assert report.status == "done" and "figure training_curves.png not drawn: figures need matplotlib" in markdown
    assert not any(run.path(name).exists() for name in ("training_curves.png", "validate_accuracy.png"))
