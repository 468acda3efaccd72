"""TensorRT engines against the PyTorch inference-form model, with DESIGN.md's gates (GPU hosts only).

Run with ``make gpu-test`` (``pytest -m gpu``). Uses ``$BNINCEPTION_GPU_RUN`` when it names a run
directory with the artifacts (e.g. ``runs/demo`` after ``make demo``); otherwise builds a small
self-contained run with the project's own stages: the demo recipe (train, population statistics),
export, fold, FP16 and INT8. Each engine is compared with PyTorch (TF32 off) at batch sizes min,
opt and max of its profile.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from bninception.engines import available

OK, REASON = available()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not OK, reason=f"needs TensorRT and a CUDA GPU: {REASON}")]

MIN, OPT, MAX = 1, 8, 32
GATES = {  # DESIGN.md: TensorRT FP32 (TF32 off) / FP16 / INT8 as the ONNX rows of the same precision
    "fp32": {"max_abs": 1e-4, "agreement": 1.0},
    "fp16": {"agreement": 0.995},
    "int8": {"agreement": 0.99, "accuracy_drop": 0.005},
}


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
def reference(gpu_run):
    """PyTorch inference-form logits on the digits test split, TF32 off, on the GPU."""
    import torch

    from bninception.model.checkpoint import load_model
    from bninception.model.data import load_bundle, load_run_bundle, stack_split

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model, preprocess, _labels, _record = load_model(gpu_run.path("model.pt"))
    bundle = load_run_bundle(gpu_run) or load_bundle("digits", image_size=preprocess.size, seed=0)
    images, labels = stack_split(bundle.test)
    model = model.cuda().eval()
    with torch.inference_mode():
        logits = torch.cat([model(torch.from_numpy(images[i:i + 64]).cuda()).float().cpu()
                            for i in range(0, len(images), 64)]).numpy()
    return images, labels, logits


def _engine_logits(runner, images: np.ndarray, batch: int) -> np.ndarray:
    return np.concatenate([runner.run(images[i:i + batch]) for i in range(0, len(images), batch)])


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_engine_matches_pytorch_at_min_opt_max_batch(gpu_run, reference, precision: str) -> None:
    from bninception.core.errors import BninceptionError
    from bninception.core.runner import Runner
    from bninception.engines.runner import TensorRTRunner
    from bninception.engines.stages import build_engine_stage

    summary = build_engine_stage(gpu_run, precision, min_batch=MIN, opt_batch=OPT, max_batch=MAX)
    runner = TensorRTRunner(summary["plan"])
    assert isinstance(runner, Runner)
    assert (runner.input_spec.min_batch, runner.input_spec.max_batch) == (MIN, MAX)
    images, labels, torch_logits = reference
    gate = GATES[precision]
    for batch in (MIN, OPT, MAX):
        logits = _engine_logits(runner, images, batch)
        assert logits.shape == torch_logits.shape and logits.dtype == np.float32
        agreement = float(np.mean(logits.argmax(1) == torch_logits.argmax(1)))
        max_abs = float(np.max(np.abs(logits - torch_logits)))
        print(f"{precision} batch {batch}: top-1 agreement {agreement:.4f}, max abs diff {max_abs:.3g}")
        assert agreement >= gate["agreement"], (precision, batch, agreement)
        if "max_abs" in gate:
            assert max_abs <= gate["max_abs"], (precision, batch, max_abs)
        if "accuracy_drop" in gate:
            drop = float(np.mean(torch_logits.argmax(1) == labels) - np.mean(logits.argmax(1) == labels))
            assert drop <= gate["accuracy_drop"], (precision, batch, drop)
    with pytest.raises(BninceptionError, match="outside the supported range"):
        runner.run(images[:MAX + 1])
    # a second build is a no-op: the engine is reused by key
    assert build_engine_stage(gpu_run, precision, min_batch=MIN, opt_batch=OPT, max_batch=MAX)["status"] \
        == "skipped"
