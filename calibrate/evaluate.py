"""Reduced-precision model vs the FP32 folded model on ONNX Runtime CPU: agreement, accuracy, logit diff."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from bninception.core.errors import BninceptionError

if TYPE_CHECKING:
    import onnx

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


@dataclass
class EvaluationSet:
    """Evaluation images, streamed in batches: the run's test split with labels, or photo crops."""

    dataset: Any
    labeled: bool
    source: str
    batch_size: int = 64

    def batches(self) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        for start in range(0, len(self.dataset), self.batch_size):
            items = [self.dataset[i] for i in range(start, min(start + self.batch_size, len(self.dataset)))]
            if self.labeled:
                images = np.stack([np.asarray(im) for im, _ in items]).astype(np.float32)
                yield images, np.asarray([label for _, label in items], dtype=np.int64)
            else:
                yield np.stack([np.asarray(im) for im in items]).astype(np.float32), None


def evaluation_set(bundle: Any, preprocess: Any) -> EvaluationSet:
    """The whole test split of the run's dataset ``bundle`` (labels; no augmentation), or, when
    the run has no dataset (``bundle`` None), crops of scikit-image photographs without labels."""
    if bundle is not None:
        test = copy.copy(bundle.test)
        if hasattr(test, "augment"):
            test.augment = False
        return EvaluationSet(test, True, f"{bundle.name} test split ({len(test)} images)")
    if preprocess is None:
        raise BninceptionError("the run records no dataset and the model has no preprocessing metadata: "
                               "cannot build evaluation images")
    from bninception.calibrate.data import PhotoCrops

    crops = PhotoCrops(preprocess, AGREEMENT_CROPS, seed=1)
    return EvaluationSet(crops, False, f"{len(crops)} crops of scikit-image photographs (no labels)")


def run_models(models: dict[str, onnx.ModelProto], evalset: EvaluationSet
               ) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Logits of every model over the evaluation set, one batch of images in memory at a time."""
    sessions = {name: cpu_session(model) for name, model in models.items()}
    outs: dict[str, list[np.ndarray]] = {name: [] for name in models}
    labels: list[np.ndarray] = []
    for images, batch_labels in evalset.batches():
        for name, sess in sessions.items():
            feed = {sess.get_inputs()[0].name: np.ascontiguousarray(images)}
            outs[name].append(np.asarray(sess.run(None, feed)[0], dtype=np.float32))
        if batch_labels is not None:
            labels.append(batch_labels)
    if not labels and evalset.labeled:
        raise BninceptionError(f"{evalset.source}: no evaluation images")
    result = {name: np.concatenate(chunks) for name, chunks in outs.items()}
    return result, (np.concatenate(labels) if labels else None)


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
