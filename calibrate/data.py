"""Image batches for calibration and the FP16 / INT8 gates, streamed, with the sha256 of what was read."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from bninception.core.errors import BninceptionError

MAX_SAMPLES = 100_000


class BatchReader:
    """``dataset[indices]`` as float32 NCHW batches (and labels); ``sha256`` hashes the last complete pass."""

    def __init__(self, dataset: Any, indices: np.ndarray | None = None, batch_size: int = 64,
                 source: str = "dataset") -> None:
        if len(dataset) == 0:
            raise BninceptionError(f"{source} is empty")
        self.dataset = copy.copy(dataset)
        if hasattr(self.dataset, "augment"):
            self.dataset.augment = False
        self.indices = np.arange(len(dataset)) if indices is None else np.asarray(indices)
        self.batch_size = int(batch_size)
        self.source = source
        self.sha256: str | None = None

    def __len__(self) -> int:
        return len(self.indices)

    def batches(self) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        digest = hashlib.sha256()
        for start in range(0, len(self.indices), self.batch_size):
            items = [self.dataset[int(i)] for i in self.indices[start:start + self.batch_size]]
            labeled = isinstance(items[0], tuple)
            images = np.stack([np.asarray(item[0] if labeled else item, dtype=np.float32) for item in items])
            images = np.ascontiguousarray(images, dtype=np.float32)
            digest.update(images.tobytes())
            yield images, (np.asarray([item[1] for item in items], dtype=np.int64) if labeled else None)
        self.sha256 = digest.hexdigest()

    def __iter__(self) -> Iterator[np.ndarray]:
        return (images for images, _ in self.batches())


def calibration_subset(dataset: Any, samples: int, seed: int = 0, source: str = "dataset") -> BatchReader:
    """``samples`` items of ``dataset`` chosen with ``seed``, in index order."""
    if not 1 <= samples <= MAX_SAMPLES:
        raise BninceptionError(f"--samples must be in 1..{MAX_SAMPLES}, got {samples}")
    if len(dataset) == 0:
        raise BninceptionError(f"calibration source {source} is empty")
    chosen = np.sort(np.random.default_rng(seed).permutation(len(dataset))[:min(samples, len(dataset))])
    return BatchReader(dataset, chosen, source=f"{source} ({len(chosen)} of {len(dataset)} images, seed {seed})")
