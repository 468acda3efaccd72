"""Shared fixtures: one trained demo run per test session (digits, default recipe), and a small served model."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from run_helpers import copy_run
from serve_helpers import export_classifier

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
    return copy_run(demo_run, tmp_path / "run")


@pytest.fixture(scope="session")
def onnx_run(demo_run: RunDir, tmp_path_factory: pytest.TempPathFactory) -> RunDir:
    """The demo run with every ONNX artifact (model, folded, FP16, both INT8 layouts), made once by the
    stages on a copy of ``demo_run``. Shared: tests read it, or change a ``copy_run`` of it."""
    from bninception.calibrate.stages import fp16_stage, int8_stage
    from bninception.export.stages import export_stage, fold_stage

    run = copy_run(demo_run, tmp_path_factory.mktemp("onnx_run") / "run")
    for stage in (export_stage, fold_stage, fp16_stage, int8_stage):
        stage(run)
    return run


@pytest.fixture
def onnx_run_copy(onnx_run: RunDir, tmp_path: Path) -> RunDir:
    """A private copy of ``onnx_run`` that a test may change."""
    return copy_run(onnx_run, tmp_path / "onnx_run")


# -- a small served model (the serve/, Triton, deploy and CPU-quota tests) ------------------------
@pytest.fixture(scope="session")
def serve_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_classifier(tmp_path_factory.mktemp("serve_model") / "model.folded.onnx")


@pytest.fixture(scope="session")
def serve_bare_model_path(tmp_path_factory: pytest.TempPathFactory, serve_model_path: Path) -> Path:
    """The same model with no bninception.* metadata_props."""
    import onnx

    proto = onnx.load(str(serve_model_path))
    del proto.metadata_props[:]
    path = tmp_path_factory.mktemp("serve_bare") / "model.onnx"
    onnx.save(proto, str(path))
    return path


@pytest.fixture(scope="session")
def serve_reference(serve_model_path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """In-process ONNX Runtime logits for a batch (the numbers the server must reproduce)."""
    from bninception.core.runner import OrtRunner

    return OrtRunner(str(serve_model_path)).run
