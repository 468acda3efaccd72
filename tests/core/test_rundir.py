"""Atomic artifacts and the manifest's freshness rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from bninception.core.errors import BninceptionError
from bninception.core.files import atomic_path, atomic_write_text
from bninception.core.rundir import RunDir


def test_a_failed_write_keeps_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    atomic_write_text(target, "good")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_stage_freshness_follows_params_inputs_and_outputs(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    atomic_write_text(run.path("in.txt"), "a")
    atomic_write_text(run.path("out.txt"), "b")
    run.record("stage", {"x": 1}, ["in.txt"], ["out.txt"], 0.1)
    assert run.is_fresh("stage", {"x": 1}, ["in.txt"], ["out.txt"])
    assert not run.is_fresh("stage", {"x": 2}, ["in.txt"], ["out.txt"])
    atomic_write_text(run.path("in.txt"), "changed")
    assert not run.is_fresh("stage", {"x": 1}, ["in.txt"], ["out.txt"])
    run.record("stage", {"x": 1}, ["in.txt"], ["out.txt"], 0.1)
    run.path("out.txt").unlink()
    assert not run.is_fresh("stage", {"x": 1}, ["in.txt"], ["out.txt"])
    assert run.manifest()["artifacts"]["out.txt"]["stage"] == "stage"
    run.forget("stage")
    assert "out.txt" not in run.manifest()["artifacts"]


def test_corrupt_manifest_and_missing_artifacts_are_clear_errors(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    with pytest.raises(BninceptionError, match=r"model\.pt is missing \(run train\)"):
        run.require("model.pt", "run train")
    run.path("manifest.json").write_text("{not json")
    with pytest.raises(BninceptionError, match=r"manifest\.json is not valid JSON"):
        run.manifest()
