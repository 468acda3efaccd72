"""Bad input and a hostile host never show a traceback: one line naming what was wrong, exit 2."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from cli_helpers import one_line_error
from run_helpers import recorded

from bninception.cli import main
from bninception.core.rundir import RunDir


@pytest.mark.parametrize(("content", "needle"), [
    (os.urandom(64) + b"\xff\xfe", "is not valid JSON"),
    (b'{"format": "bninception-manifest/1", "stages": []}', "'stages' and 'artifacts' must be objects"),
    (b'{"format": "bninception-manifest/1", "stages": {"export": {"outputs": ["model.onnx"]}}}',
     "stage 'export' outputs must map file names to sha256 strings"),
    (b'{"format": "something-else"}', "is not a bninception-manifest/1 manifest"),
])
def test_damaged_manifest_says_how_to_recover(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              content: bytes, needle: str) -> None:
    (tmp_path / "manifest.json").write_bytes(content)
    assert main(["report", "--run", str(tmp_path)]) == 2
    one_line_error(capsys, needle, f"mv {tmp_path / 'manifest.json'}", "re-run")


def test_run_that_is_a_file_and_outputs_that_are_the_wrong_kind(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    for command in (["validate", "--run", str(a_file)], ["train", "--run", str(a_file), "--epochs", "1"]):
        assert main(command) == 2
        one_line_error(capsys, f"--run {a_file} is a file, not a run directory")
    assert main(["triton-repo", "--run", str(tmp_path), "-o", str(a_file)]) == 2
    one_line_error(capsys, "is a file")


def test_model_pt_without_its_preprocessing_record(demo_run: RunDir, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    record = torch.load(demo_run.path("model.pt"), weights_only=True)
    del record["preprocess"]
    torch.save(record, tmp_path / "model.pt")
    recorded(RunDir(tmp_path), "population", "model.pt")
    assert main(["validate", "--run", str(tmp_path), "--data", "digits"]) == 2
    one_line_error(capsys, "model.pt: bninception-model/1 file needs 'preprocess' as a dict, found missing")


def test_corrupt_onnx_under_validate_is_bad_input_not_a_failed_gate(onnx_run: RunDir, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    demo_run = onnx_run
    run = RunDir(tmp_path / "run")
    for name in ("model.pt", "manifest.json"):
        run.path(name).write_bytes(demo_run.path(name).read_bytes())
    run.path("model.onnx").write_bytes(demo_run.path("model.onnx").read_bytes()[:5000])  # truncated
    recorded(run, "export", "model.onnx")  # by a stage that wrote it so (a changed file: test_artifact_integrity)
    assert main(["validate", "--run", str(run.root), "--limit", "16"]) == 2
    one_line_error(capsys, "model.onnx", "ONNX Runtime cannot load")
    saved = json.loads(run.path("validate.json").read_text())
    assert [r["status"] for r in saved["rows"] if r["artifact"] == "model.onnx"] == ["ERROR"]


def test_disk_full_is_one_line_and_keeps_the_previous_artifact(demo_run: RunDir, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    import bninception.core.files as files

    run = RunDir(tmp_path / "run")
    for name in ("model.pt", "manifest.json"):
        run.path(name).write_bytes(demo_run.path(name).read_bytes())
    run.path("model.onnx").write_bytes(b"the previous good file")
    recorded(run, "export", "model.onnx")

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.os, "fsync", no_space)
    assert main(["export", "--run", str(run.root), "--force"]) == 2
    one_line_error(capsys, "No space left on device", "finished artifacts are kept")
    assert run.path("model.onnx").read_bytes() == b"the previous good file"
    assert not list(run.root.glob(".*.tmp"))


def test_resume_from_a_corrupt_checkpoint_keeps_the_train_record(demo_run: RunDir, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A failed --resume must not make the run forget it was trained (validate would call it imported)."""
    run = RunDir(tmp_path / "run")
    for name in ("checkpoint.pt", "model.pt", "manifest.json"):
        run.path(name).write_bytes(demo_run.path(name).read_bytes())
    before = run.manifest()["stages"]["train"]
    run.path("checkpoint.pt").write_bytes(b"not a checkpoint")
    assert main(["train", "--run", str(run.root), "--resume", "--epochs", "31"]) == 2
    one_line_error(capsys, "checkpoint.pt is not a PyTorch file")
    assert run.manifest()["stages"]["train"] == before
