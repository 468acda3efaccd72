"""The inputs export and fold check parity on: the run's test images, or photographs + random inputs."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from bninception.core.errors import BninceptionError

if TYPE_CHECKING:
    from bninception.core.preprocess import Preprocess
    from bninception.core.rundir import RunDir
    from bninception.core.runner import OrtRunner

log = logging.getLogger(__name__)
RUN_IMAGES = 64


def random_inputs(shape: tuple[int, ...], count: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, *shape)).astype(np.float32)


def run_images(run: RunDir, preprocess: Preprocess) -> tuple[np.ndarray, str]:
    """The run's test images if it records a dataset, else photographs + 2 random inputs."""
    from bninception.model.data import load_run_bundle, stack_split
    from bninception.model.photos import sample_photos

    shape = (preprocess.channels, preprocess.size, preprocess.size)
    try:
        bundle = load_run_bundle(run)
    except BninceptionError as exc:  # e.g. the ImageFolder it was trained on has moved
        log.warning("parity on photographs: the run's dataset cannot be loaded (%s)", exc)
        bundle = None
    if bundle is not None:
        images, _ = stack_split(bundle.test, limit=RUN_IMAGES)
        if images.shape[1:] == shape:
            return images.astype(np.float32), f"run test split ({len(images)} images)"
    photos = sample_photos(preprocess)
    if photos.shape[1:] != shape:
        raise BninceptionError(f"sample photographs give {photos.shape[1:]}, the model takes {shape}")
    mixed = np.concatenate([photos, random_inputs(shape)])
    return mixed, f"{len(photos)} scikit-image photographs + 2 random inputs"


def parity_runner(model: Any, name: str) -> OrtRunner:
    """An ONNX Runtime CPU Runner with graph optimizations off, as every FP32 parity gate uses."""
    from bninception.core.runner import OrtRunner

    return OrtRunner(model, name=name, optimization="disable", spinning=False, what=name)
