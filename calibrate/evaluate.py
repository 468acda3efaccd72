"""Reduced-precision model vs the FP32 folded model on ONNX Runtime CPU: agreement, accuracy, logit diff."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from bninception.errors import BninceptionError

if TYPE_CHECKING:
    import onnx

    from bninception.rundir import RunDir

AGREEMENT_CROPS = 64


@dataclass
class Comparison:
    """Candidate vs reference logits; accuracies in [0, 1], ``accuracy_drop`` in percentage points."""

    source: str
    samples: int
    top1_agreement: float
    max_abs_diff: float
    max_abs_ref: float
    accuracy_fp32: float | None = None
    accuracy: float | None = None
    accuracy_drop_points: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cpu_session(model: onnx.ModelProto | str, optimization: str = "all"):  # type: ignore[no-untyped-def]
    """An ONNX Runtime CPU session on a ModelProto or a path (``all``: the fusions serving gets)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimization]
    options.log_severity_level = 3
    source = model if isinstance(model, str) else model.SerializeToString()
    try:
        return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises several unrelated types
        raise BninceptionError(f"ONNX Runtime CPU cannot load the model: {exc}") from exc


def logits(model: onnx.ModelProto | str, images: np.ndarray, batch: int = 64) -> np.ndarray:
    sess = cpu_session(model)
    name = sess.get_inputs()[0].name
    outs = [sess.run(None, {name: np.ascontiguousarray(images[i:i + batch])})[0]
            for i in range(0, len(images), batch)]
    return np.concatenate(outs).astype(np.float32)


def evaluation_set(run: RunDir, preprocess: Any) -> tuple[np.ndarray, np.ndarray | None, str]:
    """The run's whole test split with labels, or (no dataset) photo crops without labels."""
    from bninception.model.data import load_run_bundle, stack_split

    bundle = load_run_bundle(run)
    if bundle is not None:
        images, labels = stack_split(bundle.test)
        return images.astype(np.float32), labels, f"{bundle.name} test split ({len(images)} images)"
    if preprocess is None:
        raise BninceptionError("the run records no dataset and the model has no preprocessing metadata: "
                               "cannot build evaluation images")
    from bninception.calibrate.data import PhotoCrops

    crops = PhotoCrops(preprocess, AGREEMENT_CROPS, seed=1)
    images = np.stack([crops[i] for i in range(len(crops))]).astype(np.float32)
    return images, None, f"{len(images)} crops of scikit-image photographs (no labels)"


def compare(reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray | None, source: str
            ) -> Comparison:
    if reference.shape != candidate.shape:
        raise BninceptionError(f"output shapes differ: {reference.shape} vs {candidate.shape}")
    ref = reference.reshape(len(reference), -1).astype(np.float64)
    cand = candidate.reshape(len(candidate), -1).astype(np.float64)
    result = Comparison(
        source=source, samples=len(ref),
        top1_agreement=float(np.mean(ref.argmax(1) == cand.argmax(1))),
        max_abs_diff=float(np.max(np.abs(ref - cand))) if np.all(np.isfinite(cand)) else float("inf"),
        max_abs_ref=float(np.max(np.abs(ref))),
    )
    if labels is not None:
        result.accuracy_fp32 = float(np.mean(ref.argmax(1) == labels))
        result.accuracy = float(np.mean(cand.argmax(1) == labels))
        result.accuracy_drop_points = round(100.0 * (result.accuracy_fp32 - result.accuracy), 6)
    return result
