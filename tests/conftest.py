"""Shared fixtures: one trained demo run per test session (digits, default recipe)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from bninception.core.rundir import RunDir


def pytest_configure(config: pytest.Config) -> None:
    """One torch thread in the test process: with 2 cores, any second busy process (a spawned server,
    a DDP rank) makes OpenMP's spinning threads 10-100x slower; one thread costs ~1.3x at most."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> RunDir:
    """A run trained with the default demo recipe, with population statistics (model.pt).

    Session-scoped and shared: tests may add artifacts through the stage functions (which skip
    when fresh) but must not modify or delete existing files; use ``demo_run_copy`` for that.
    """
    from bninception.model.stages import population_stage, train_stage
    from bninception.model.train import TrainConfig

    run = RunDir(tmp_path_factory.mktemp("demo_run"))
    trained = os.environ.get("BNINCEPTION_TEST_TRAINED_RUN")  # make test-avx2: no training under emulation
    if trained:
        for name in ("manifest.json", "metrics.json", "checkpoint.pt"):
            shutil.copy(Path(trained, name), run.path(name))
        for stage in [s for s in run.manifest()["stages"] if s != "train"]:
            run.forget(stage)
    train_stage(run, TrainConfig(), progress=False)
    population_stage(run)
    return run


@pytest.fixture
def demo_run_copy(demo_run: RunDir, tmp_path: Path) -> RunDir:
    """A private copy of the demo run that a test may change."""
    target = tmp_path / "run"
    shutil.copytree(demo_run.root, target)
    return RunDir(target)
