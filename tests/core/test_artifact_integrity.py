"""Artifacts are used only as their stage recorded them: a changed file is refused by serve and triton-repo
and marked by validate, a stage refuses an input whose producer did not finish, a failed stage leaves no
unrecorded output, a full disk is one line, and a PyTorch file cannot inflate past its own size."""

from __future__ import annotations

import errno
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from cli_helpers import one_line_error
from run_helpers import copy_run
from validate_helpers import perturb_final_bias

from bninception.cli import main
from bninception.core.errors import BninceptionError
from bninception.core.rundir import RunDir


def test_a_changed_artifact_is_refused_by_serve_and_triton_repo_and_marked_by_validate(
        onnx_run: RunDir, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = copy_run(onnx_run, tmp_path / "run")
    perturb_final_bias(run.path("model.folded.onnx"), delta=50.0, index=3)  # every answer would be "3"
    assert main(["serve", "--run", str(run.root), "--port", "0"]) == 2
    one_line_error(capsys, "model.folded.onnx changed after stage fold wrote it", "bninception fold")
    assert main(["triton-repo", "--run", str(run.root), "-o", str(tmp_path / "repo")]) == 2
    one_line_error(capsys, "model.folded.onnx changed after stage fold wrote it")
    assert not (tmp_path / "repo").exists()

    perturb_final_bias(run.path("model.int8.onnx"), delta=0.01)
    assert main(["validate", "--run", str(run.root), "--limit", "32", "--no-engines"]) == 2
    err = one_line_error(capsys, "model.int8.onnx changed after stage int8 wrote it")
    assert "PASS" not in err


def test_a_stage_refuses_the_checkpoint_of_a_killed_training(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    train = subprocess.Popen([sys.executable, "-m", "bninception", "train", "--run", str(run), "--epochs", "200",
                              "--width", "0.125"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (run / "checkpoint.pt").is_file():  # the first epoch's checkpoint
            assert train.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        train.send_signal(signal.SIGKILL)
        train.wait()
    assert main(["population", "--run", str(run)]) == 2
    one_line_error(capsys, "checkpoint.pt was not recorded by a finished stage", "bninception train",
                   "--resume")
    assert not (run / "model.pt").exists()
    assert "population" not in RunDir(run).manifest()["stages"]


def test_a_stage_that_fails_halfway_leaves_no_unrecorded_output(onnx_run: RunDir, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """The INT8 stage writes model.int8.onnx, then the disk fills while it writes the CPU file."""
    import bninception.calibrate.stages as stages

    run = copy_run(onnx_run, tmp_path / "run")
    run.forget("int8")
    for name in ("model.int8.onnx", "model.int8.cpu.onnx", "calibration.json", "int8_report.json"):
        run.path(name).unlink()
    write = stages._write_model

    def disk_fills(run_dir: RunDir, name: str, model: object) -> None:
        if name == "model.int8.cpu.onnx":
            raise OSError(errno.ENOSPC, "No space left on device", str(run_dir.path(name)))
        write(run_dir, name, model)  # type: ignore[arg-type]

    monkeypatch.setattr(stages, "_write_model", disk_fills)
    assert main(["calibrate", "--run", str(run.root), "--precision", "int8"]) == 2
    one_line_error(capsys, "No space left on device")
    assert not run.path("model.int8.onnx").exists()  # written, then removed with the failed stage
    assert not list(run.root.glob(".*.tmp"))
    with pytest.raises(BninceptionError, match=r"model\.int8\.onnx is missing"):
        from bninception.served import model_path_for

        model_path_for(run.root, "int8", "cuda")


@pytest.mark.skipif(sys.platform != "linux", reason="a real full disk needs a tmpfs mount (Linux, root)")
def test_population_on_a_full_disk_is_one_line(demo_run: RunDir, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    import os
    import shutil

    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    needed = sum(demo_run.path(n).stat().st_size for n in ("checkpoint.pt", "manifest.json")) + (256 << 10)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={needed}", "tmpfs", str(mount)]).returncode:
        pytest.skip("this host cannot mount a tmpfs")
    try:
        for name in ("checkpoint.pt", "manifest.json"):
            shutil.copy(demo_run.path(name), mount / name)
        assert main(["population", "--run", str(mount), "--force"]) == 2
        one_line_error(capsys, "model.pt", "writing failed")
        assert sorted(p.name for p in mount.iterdir() if p.name != ".lock") == ["checkpoint.pt", "manifest.json"]
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_pytorch_file_that_inflates_is_refused_before_loading(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    plain = tmp_path / "plain.pt"
    torch.save({"conv1_7x7_s2.weight": torch.zeros(16 << 20, dtype=torch.uint8)}, plain)  # 16 MiB stored
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as target:
        for entry in source.infolist():
            target.writestr(entry.filename, source.read(entry.filename))
    assert bomb.stat().st_size < (1 << 20)
    assert main(["import-weights", "--run", str(tmp_path / "run"), str(bomb)]) == 2
    one_line_error(capsys, "bomb.pt: its entries inflate to", "refused unloaded")


def test_reports_written_by_the_commands_are_recorded_for_report(onnx_run: RunDir, tmp_path: Path) -> None:
    """validate.json and bench.json from `validate` and `bench` are recorded, so `report` may read them."""
    run = copy_run(onnx_run, tmp_path / "run")
    assert main(["validate", "--run", str(run.root), "--limit", "64", "--no-engines"]) in (0, 1)
    assert main(["bench", "--run", str(run.root), "--batch-sizes", "1", "--min-seconds", "0.01",
                 "--max-seconds", "0.02", "--no-engines", "--served-only"]) == 0
    assert run.problem("validate.json") is None and run.problem("bench.json") is None
    assert main(["report", "--run", str(run.root)]) == 0
