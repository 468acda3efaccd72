"""The one-command pipeline: every gate passes, re-runs skip, --force redoes, a kill loses nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bninception.core.errors import BninceptionError
from bninception.core.rundir import RunDir
from bninception.pipeline import STAGES, PipelineOptions, run_pipeline

FAST = {"stage_options": {"bench": {"batch_sizes": (1,)}}, "engines": True}
GATED = ["train", "population", "export", "fold", "fp16", "int8", "validate", "bench", "report"]


def manifest_is_consistent(run: RunDir) -> None:
    """Every artifact the manifest claims exists with its recorded hash."""
    for stage, record in run.manifest()["stages"].items():
        for name, digest in record["outputs"].items():
            assert run.path(name).is_file(), f"{stage} claims missing {name}"
            assert run.sha256(name) == digest, f"{stage} claims a different {name}"


def test_pipeline_passes_then_skips_then_forces(onnx_run_copy: RunDir) -> None:
    run = onnx_run_copy
    result = run_pipeline(run, PipelineOptions(**FAST))
    assert result.passed
    stages = run.manifest()["stages"]
    assert {"train", "population", "export", "fold", "fp16", "int8", "validate", "bench", "report"} <= set(stages)
    for name in ("model.onnx", "model.folded.onnx", "model.fp16.onnx", "model.int8.onnx", "calibration.json",
                 "report.md", "report.json", "validate.json", "bench.json"):
        assert run.path(name).is_file(), name
    manifest_is_consistent(run)
    finished = {k: v["finished"] + str(v["seconds"]) for k, v in stages.items()}

    assert [r.stage for r in result.results] == [*GATED[:6], "engines", *GATED[6:]]
    assert result.statuses()["train"] == "skipped"  # the fixture trained it; later stages depend on test order
    assert set(result.statuses().values()) <= {"done", "skipped"}

    again = run_pipeline(run, PipelineOptions(**FAST))
    assert again.passed
    assert {k: v["finished"] + str(v["seconds"]) for k, v in run.manifest()["stages"].items()} == finished
    assert again.statuses() == {**dict.fromkeys(GATED, "skipped"), "engines": "skipped"}

    forced = run_pipeline(run, PipelineOptions(**FAST, force_from="int8"))
    assert forced.passed
    assert [s for s, status in forced.statuses().items() if status == "done"] == ["int8", "validate", "bench",
                                                                                  "report"]
    now = run.manifest()["stages"]
    for stage in ("train", "population", "export", "fold", "fp16"):
        assert now[stage]["finished"] + str(now[stage]["seconds"]) == finished[stage], stage
    assert now["int8"]["seconds"] != stages["int8"]["seconds"] or now["int8"]["finished"] != stages["int8"]["finished"]
    with pytest.raises(BninceptionError, match="--force takes one of"):
        run_pipeline(run, PipelineOptions(**FAST, force_from="everything"))
    assert STAGES[0] == "train" and STAGES[-1] == "report"


def test_keep_going_records_a_failed_stage_and_runs_the_rest(onnx_run_copy: RunDir) -> None:
    run = onnx_run_copy
    broken = {"stage_options": {"int8": {"method": "bogus"}, "bench": {"batch_sizes": (1,)}}, "engines": False}
    with pytest.raises(BninceptionError, match="--method must be one of"):
        run_pipeline(run, PipelineOptions(**broken))
    result = run_pipeline(run, PipelineOptions(**broken, keep_going=True))
    statuses = result.statuses()
    assert statuses["int8"] == "failed" and statuses["engines"] == "skipped", statuses
    assert statuses["validate"] != "failed" and statuses["report"] != "failed", statuses
    assert result.validation.passed and not result.passed  # every gate passed, one stage did not run
    assert "--method must be one of" in result.to_dict()["stages"][5]["error"]


@pytest.mark.slow
def test_killed_pipeline_leaves_good_artifacts_and_resumes(demo_run_copy: RunDir) -> None:
    run = demo_run_copy
    before = {name: run.sha256(name) for name in ("checkpoint.pt", "model.pt")}
    command = [sys.executable, "-m", "bninception", "pipeline", "--run", str(run.root), "--batch-sizes", "1",
               "--force", "export"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert process.stderr is not None
    for line in process.stderr:
        if line.startswith("stage export"):  # export finished: kill it somewhere in fold/fp16
            break
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    manifest_is_consistent(run)
    assert {name: run.sha256(name) for name in before} == before
    finish = subprocess.run(command[:-2], capture_output=True, text=True, timeout=600)
    assert finish.returncode == 0, finish.stderr[-3000:]
    assert "train: up to date, skipped" in finish.stderr
    assert "all gates PASS" in finish.stderr
    manifest_is_consistent(run)
    assert not list(Path(run.root).glob(".*.tmp")), "a temporary file was left behind"
