"""TensorRT engines through the project's own validate (docs/DESIGN.md's gates), on GPU hosts only.

Run with ``make gpu-test`` (``pytest -m gpu``). Uses ``$BNINCEPTION_GPU_RUN`` when it names a run
directory with the artifacts (e.g. ``runs/demo`` after ``make demo``); otherwise builds a small
self-contained run with the project's own stages: the demo recipe (train, population statistics),
export, fold, FP16 and INT8. The engines are built with the build-engine stage and judged by
``bninception.evaluate.validate.validate_run``: the gates live there, not here.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bninception.engines import available

OK, REASON = available()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not OK, reason=f"needs TensorRT and a CUDA GPU: {REASON}")]

MIN, OPT, MAX = 1, 8, 32
PRECISIONS = ("fp32", "fp16", "int8")


@pytest.fixture(scope="module")
def gpu_run(tmp_path_factory: pytest.TempPathFactory):
    from bninception.calibrate.stages import fp16_stage, int8_stage
    from bninception.core.rundir import RunDir
    from bninception.export.stages import export_stage, fold_stage
    from bninception.model.stages import population_stage, train_stage
    from bninception.model.train import TrainConfig

    given = os.environ.get("BNINCEPTION_GPU_RUN")
    if given and Path(given, "model.pt").is_file():
        return RunDir(given, create=False)
    run = RunDir(tmp_path_factory.mktemp("gpu-run"))
    train_stage(run, TrainConfig(), progress=False)
    population_stage(run)
    export_stage(run)
    fold_stage(run)
    fp16_stage(run)
    int8_stage(run)
    return run


@pytest.fixture(scope="module")
def engines(gpu_run):
    from bninception.engines.stages import build_engine_stage

    return {p: build_engine_stage(gpu_run, p, min_batch=MIN, opt_batch=OPT, max_batch=MAX).to_dict()
            for p in PRECISIONS}


def test_validate_passes_every_engine_row(gpu_run, engines) -> None:
    from bninception.evaluate.validate import validate_run

    report = validate_run(gpu_run, include_engines=True, save=False)
    print(report.table())
    rows = [r for r in report.rows if r.backend == "tensorrt" or "tensorrt" in r.kind]
    by_precision = {p: [r for r in rows if r.precision == p] for p in PRECISIONS}
    assert all(by_precision.values()), (f"validate ran no TensorRT row for some precision: "
                                        f"{ {p: len(v) for p, v in by_precision.items()} }; skipped: "
                                        f"{[s.to_dict() for s in report.skipped]}")
    failed = [f"{r.name} ({r.artifact}): {r.status} {'; '.join(r.failures)}" for r in rows if r.status != "PASS"]
    assert not failed, failed
    for precision, summary in engines.items():
        assert any(r.artifact.endswith(Path(summary["plan"]).name) for r in by_precision[precision]), precision


def test_engine_profile_bounds_and_reuse(gpu_run, engines) -> None:
    import numpy as np

    from bninception.core.errors import BninceptionError
    from bninception.core.runner import Runner
    from bninception.engines.runner import TensorRTRunner
    from bninception.engines.stages import build_engine_stage

    runner = TensorRTRunner(engines["fp32"]["plan"])
    assert isinstance(runner, Runner)
    spec = runner.input_spec
    assert (spec.min_batch, spec.max_batch) == (MIN, MAX)
    batch = np.zeros((MAX + 1, spec.channels, spec.height, spec.width), dtype=np.float32)
    with pytest.raises(BninceptionError, match="outside the supported range"):
        runner.run(batch)
    assert runner.run(batch[:MAX]).shape[0] == MAX
    for precision in PRECISIONS:  # a second build is a no-op: the engine is reused by key
        again = build_engine_stage(gpu_run, precision, min_batch=MIN, opt_batch=OPT, max_batch=MAX).to_dict()
        assert again["status"] == "skipped" and again["key"] == engines[precision]["key"]


def test_context_model_runs_our_plan_where_onnx_runtime_has_tensorrt(gpu_run, engines) -> None:
    import numpy as np

    from bninception.core.ort import onnxruntime
    from bninception.engines.epcontext import PROVIDER, ContextModelRunner
    from bninception.engines.runner import TensorRTRunner
    from bninception.engines.store import read_sidecar

    if PROVIDER not in onnxruntime().get_available_providers():  # a condition, not a swallowed exception
        pytest.skip(f"this ONNX Runtime has no {PROVIDER} (pip install 'bninception[gpu]')")
    summary = engines["fp16"]
    ort_runner = ContextModelRunner(summary["context_model"], read_sidecar(summary["sidecar"]))
    trt_runner = TensorRTRunner(summary["plan"])
    spec = trt_runner.input_spec
    batch = np.random.default_rng(0).standard_normal((OPT, spec.channels, spec.height, spec.width),
                                                     dtype=np.float32)
    np.testing.assert_allclose(ort_runner.run(batch), trt_runner.run(batch), rtol=0, atol=1e-3)
