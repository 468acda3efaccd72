"""The FP16 / INT8 gates' images, and the logits of several models over them.

The images: the run's test split with labels, or (runs without a dataset) photograph crops.
Every model runs through an ONNX Runtime CPU Runner with all graph optimizations (as served);
the comparison and the gate are the shared ones in :mod:`bninception.core.gates`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from bninception.calibrate.data import BatchReader
from bninception.core.errors import BninceptionError

if TYPE_CHECKING:
    import onnx

AGREEMENT_CROPS = 64


def evaluation_set(bundle: Any, preprocess: Any) -> BatchReader:
    """The whole test split of the run's dataset ``bundle`` (labels; no augmentation), or, when
    the run has no dataset (``bundle`` None), crops of scikit-image photographs without labels."""
    if bundle is not None:
        return BatchReader(bundle.test, source=f"{bundle.name} test split ({len(bundle.test)} images)")
    if preprocess is None:
        raise BninceptionError("the run records no dataset and the model has no preprocessing metadata: "
                               "cannot build evaluation images")
    from bninception.model.photos import PhotoCrops

    crops = PhotoCrops(preprocess, AGREEMENT_CROPS, seed=1)
    return BatchReader(crops, source=f"{len(crops)} crops of scikit-image photographs (no labels)")


def run_models(models: dict[str, onnx.ModelProto], images: BatchReader
               ) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Logits of every model over the images, one batch in memory at a time; the labels if any."""
    from bninception.core.runner import OrtRunner, run_all

    runners = {name: OrtRunner(model, name=name, what=f"the {name} model") for name, model in models.items()}
    outs: dict[str, list[np.ndarray]] = {name: [] for name in models}
    labels: list[np.ndarray] = []
    for batch, batch_labels in images.batches():
        for name, runner in runners.items():
            outs[name].append(run_all(runner, batch))
        if batch_labels is not None:
            labels.append(batch_labels)
    result = {name: np.concatenate(chunks) for name, chunks in outs.items()}
    return result, (np.concatenate(labels) if labels else None)
