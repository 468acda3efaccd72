"""The logits of several models over the FP16 / INT8 gates' images (ONNX Runtime CPU, as served)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from bninception.calibrate.data import BatchReader

if TYPE_CHECKING:
    import onnx

AGREEMENT_CROPS = 64


def evaluation_set(bundle: Any, preprocess: Any) -> BatchReader:
    """The whole test split of the run's dataset ``bundle`` (labels), or photo crops for runs without one."""
    from bninception.model.data import run_images

    data, source = run_images(bundle, "test", preprocess, AGREEMENT_CROPS, seed=1)
    return BatchReader(data, source=f"{source} ({len(data)} images)")


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
