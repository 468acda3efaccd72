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
    from bninception.core.preprocess import Preprocess

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


class PhotoCrops:
    """A dataset-like list of random crops / flips of scikit-image's sample photos (no labels)."""

    def __init__(self, preprocess: Preprocess, count: int, seed: int = 0) -> None:
        import skimage.data
        from PIL import Image

        from bninception.export.parity import PHOTOS

        self.preprocess = preprocess
        self.photos = [Image.fromarray(getattr(skimage.data, name)()) for name in PHOTOS]
        rng = np.random.default_rng(seed)
        self.params = [(int(rng.integers(len(self.photos))), float(rng.uniform(0.5, 1.0)),
                        float(rng.uniform()), float(rng.uniform()), bool(rng.integers(2)))
                       for _ in range(count)]

    def __len__(self) -> int:
        return len(self.params)

    def __getitem__(self, index: int) -> np.ndarray:
        from PIL import Image

        photo, frac, fy, fx, flip = self.params[index]
        image = self.photos[photo]
        side = max(8, int(min(image.size) * frac))
        left = int((image.size[0] - side) * fx)
        top = int((image.size[1] - side) * fy)
        crop = image.crop((left, top, left + side, top + side))
        if flip:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return self.preprocess(crop)
