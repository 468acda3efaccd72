"""Training: determinism across resume, checkpoints, the CLI, DDP with gloo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bninception.core.errors import BninceptionError
from bninception.core.rundir import RunDir
from bninception.model.checkpoint import CHECKPOINT_FORMAT, load
from bninception.model.stages import train_stage
from bninception.model.train import TrainConfig

SMALL = TrainConfig(width=0.125, epochs=2, batch_size=64)


def test_resume_ends_with_the_same_weights(tmp_path: Path) -> None:
    straight = RunDir(tmp_path / "straight")
    train_stage(straight, SMALL, progress=False)
    interrupted = RunDir(tmp_path / "interrupted")
    train_stage(interrupted, TrainConfig(**{**SMALL.to_dict(), "epochs": 1}), progress=False)
    assert load(interrupted.path("checkpoint.pt"), CHECKPOINT_FORMAT)["epoch"] == 1
    train_stage(interrupted, SMALL, resume=True, progress=False)
    a = load(straight.path("checkpoint.pt"), CHECKPOINT_FORMAT)
    b = load(interrupted.path("checkpoint.pt"), CHECKPOINT_FORMAT)
    assert a["epoch"] == b["epoch"] == 2
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]


def test_resume_with_other_settings_is_refused(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    train_stage(run, TrainConfig(**{**SMALL.to_dict(), "epochs": 1}), progress=False)
    with pytest.raises(BninceptionError, match="different settings"):
        train_stage(run, TrainConfig(**{**SMALL.to_dict(), "lr_scale": 30.0}), resume=True, progress=False)


def test_cli_train_skips_when_fresh_and_reports_bad_data(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    args = [sys.executable, "-m", "bninception", "train", "--run", str(tmp_path / "run"), "--epochs", "1",
            "--width", "0.125"]
    first = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "epoch 1/1" in first.stderr
    again = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0 and "up to date, skipped" in again.stderr
    missing = subprocess.run([*args[:-4], "--data", str(tmp_path / "nowhere")], capture_output=True,
                             text=True, env=env, timeout=300)
    assert missing.returncode == 2
    assert f"dataset folder {tmp_path / 'nowhere'} does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr


@pytest.mark.slow
def test_ddp_two_processes_gloo(tmp_path: Path) -> None:
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    script = str(Path(sys.executable).parent / "bninception")  # the console script
    base = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
            script]
    trained = subprocess.run([*base, "train", "--run-dir", str(run), "--epochs", "1", "--width", "0.125",
                              "--batch-size", "32"], capture_output=True, text=True, env=env, timeout=600)
    assert trained.returncode == 0, trained.stderr[-3000:]
    population = subprocess.run([*base, "population", "--run-dir", str(run), "--batches", "4",
                                 "--batch-size", "16"], capture_output=True, text=True, env=env, timeout=600)
    assert population.returncode == 0, population.stderr[-3000:]
    state = load(run / "checkpoint.pt", CHECKPOINT_FORMAT)
    assert state["epoch"] == 1
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["train"]["world_size"] == 2
    # each rank saw half of every epoch: 1079 train images -> 539 per rank, batches of 32
    assert metrics["train"]["history"][0]["steps"] == 17
    assert metrics["population"]["test_accuracy_population"] > 0.3
    assert not list(run.glob(".*.tmp")), "a temporary file was left behind"
