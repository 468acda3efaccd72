"""Evaluation images for the FP16 / INT8 gates, and the logits of several models over them.

The images: the run's test split with labels, or (runs without a dataset) photograph crops.
Every model runs through an ONNX Runtime CPU Runner with all graph optimizations (as served);
the comparison and the gate are the shared ones in :mod:`bninception.core.gates`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from bninception.core.errors import BninceptionError

if TYPE_CHECKING:
    import onnx

AGREEMENT_CROPS = 64


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
    from bninception.model.photos import PhotoCrops

    crops = PhotoCrops(preprocess, AGREEMENT_CROPS, seed=1)
    return EvaluationSet(crops, False, f"{len(crops)} crops of scikit-image photographs (no labels)")


def run_models(models: dict[str, onnx.ModelProto], evalset: EvaluationSet
               ) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Logits of every model over the evaluation set, one batch of images in memory at a time."""
    from bninception.core.runner import OrtRunner, run_all

    runners = {name: OrtRunner(model, name=name, what=f"the {name} model") for name, model in models.items()}
    outs: dict[str, list[np.ndarray]] = {name: [] for name in models}
    labels: list[np.ndarray] = []
    for images, batch_labels in evalset.batches():
        for name, runner in runners.items():
            outs[name].append(run_all(runner, images))
        if batch_labels is not None:
            labels.append(batch_labels)
    if not any(outs.values()) or (evalset.labeled and not labels):
        raise BninceptionError(f"{evalset.source}: no evaluation images")
    result = {name: np.concatenate(chunks) for name, chunks in outs.items()}
    return result, (np.concatenate(labels) if labels else None)
