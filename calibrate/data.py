"""Calibration data: a reader that streams N images in batches, never the whole set at once.

Sources: the run's training split without augmentation (eval preprocessing), or, for runs
without a dataset (imported weights), random crops and flips of scikit-image's sample photos.
The reader hashes the exact float32 bytes it yields, so ``calibration.json`` can name its data.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from bninception.core.errors import BninceptionError

if TYPE_CHECKING:
    pass

MAX_SAMPLES = 100_000


def _plain(dataset: Any) -> Any:
    """A shallow copy of ``dataset`` with augmentation switched off (calibrate on what serving sees)."""
    plain = copy.copy(dataset)
    if hasattr(plain, "augment"):
        plain.augment = False
    return plain


class CalibrationReader:
    """Iterable of float32 NCHW batches: ``samples`` items of ``dataset`` (seeded choice), in order.

    Each ``iter()`` is a fresh pass over the same images; ``sha256`` is the hash of the bytes of
    the last complete pass.
    """

    def __init__(self, dataset: Any, samples: int, batch_size: int = 64, seed: int = 0,
                 source: str = "dataset") -> None:
        size = len(dataset)
        if size == 0:
            raise BninceptionError(f"calibration source {source} is empty")
        if not 1 <= samples <= MAX_SAMPLES:
            raise BninceptionError(f"--samples must be in 1..{MAX_SAMPLES}, got {samples}")
        self.dataset = _plain(dataset)
        self.indices = np.sort(np.random.default_rng(seed).permutation(size)[:min(samples, size)])
        self.batch_size = int(batch_size)
        self.source = f"{source} ({len(self.indices)} of {size} images, seed {seed})"
        self.sha256: str | None = None

    def __len__(self) -> int:
        return len(self.indices)

    def _item(self, index: int) -> np.ndarray:
        item = self.dataset[int(index)]
        image = item[0] if isinstance(item, tuple) else item
        return np.asarray(image.numpy() if hasattr(image, "numpy") else image, dtype=np.float32)

    def __iter__(self) -> Iterator[np.ndarray]:
        digest = hashlib.sha256()
        for start in range(0, len(self.indices), self.batch_size):
            batch = np.stack([self._item(i) for i in self.indices[start:start + self.batch_size]])
            batch = np.ascontiguousarray(batch, dtype=np.float32)
            digest.update(batch.tobytes())
            yield batch
        self.sha256 = digest.hexdigest()
