"""The labelled images validate judges every artifact on: the run's recorded dataset's test split, or
a dataset the user names (digits, an ImageFolder), with its classes matched to the model's by id or name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bninception.core import layout
from bninception.core.errors import BninceptionError
from bninception.core.rundir import RunDir


@dataclass
class EvalData:
    """Evaluation images (float32 NCHW, model preprocessing) and labels in the model's class indices."""

    images: np.ndarray
    labels: np.ndarray
    source: str
    split: str
    classes: int
    label_mapping: str = "identity"

    def describe(self) -> dict[str, Any]:
        return {"source": self.source, "split": self.split, "images": len(self.labels),
                "classes": self.classes, "label_mapping": self.label_mapping}


def _train_params(run: RunDir) -> dict[str, Any] | None:
    record = run.manifest()["stages"].get("train")
    return None if record is None else record.get("params")


def load_eval_data(run: RunDir, data: str | None = None, limit: int | None = None,
                   by_position: bool = False) -> EvalData:
    """The test images for ``run``: its dataset's test split, or ``data`` (digits | ImageFolder: its ``test/``
    subfolder when it has one, else every image), with model.pt's preprocessing; the dataset's classes are
    matched to the model's by id or name (:func:`match_classes`), by position only when ``by_position``.
    """
    from bninception.core.preprocess import Preprocess
    from bninception.model.checkpoint import MODEL_FORMAT, class_labels, load
    from bninception.model.data import ImageFolderDataset, load_bundle, load_run_bundle, stack_split
    from bninception.model.labels import match_classes

    record = load(run.verified(layout.MODEL_PT, "the PyTorch inference-form model"), MODEL_FORMAT)
    pre = Preprocess.from_dict(record["preprocess"])
    model_labels = class_labels(record)
    params = _train_params(run)
    if data is None:
        bundle = load_run_bundle(run)
        if bundle is None:
            raise BninceptionError(f"{run.root}: no training record says which data the model was made "
                                   f"for (imported weights?); pass --data digits|PATH")
        source, split, dataset = str(params["data"] if params else bundle.name), "test", bundle.test
    else:
        seed = int(params["seed"]) if params else 0
        trained_on = params is not None and _same_data(str(params["data"]), data)
        if data == "digits" and pre.channels != 1:
            raise BninceptionError(f"--data digits gives 1x{pre.size}x{pre.size} (grayscale) images, the "
                                   f"model takes {pre.channels}x{pre.size}x{pre.size}")
        bundle = load_bundle(data, pre.size, seed, preprocess=pre)
        source = data
        if trained_on or data == "digits" or (Path(data) / "test").is_dir():
            split, dataset = "test", bundle.test
        else:
            parts = [bundle.train, bundle.val, bundle.test]
            files = [f for part in parts for f in part.files]  # type: ignore[attr-defined]
            labels = np.concatenate([part.labels for part in parts])
            split, dataset = "all", ImageFolderDataset(files, labels, pre, augment=False, seed=seed)
    mapping = match_classes(bundle.labels, model_labels, by_position)
    images, labels = stack_split(dataset, limit)
    if len(labels) == 0:
        raise BninceptionError(f"no evaluation images in {source} ({split} split)")
    return EvalData(images=images, labels=mapping.indices[labels], source=source, split=split,
                    classes=len(model_labels), label_mapping=mapping.describe())


def _same_data(recorded: str, given: str) -> bool:
    if recorded == given:
        return True
    try:
        return Path(recorded).resolve() == Path(given).resolve()
    except OSError:
        return False
