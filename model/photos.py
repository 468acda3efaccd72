"""scikit-image's sample photographs: inputs for runs without a dataset (imported weights)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from bninception.core.preprocess import Preprocess

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins")


def load_photos(limit: int = len(PHOTOS)) -> list[Any]:
    """scikit-image's bundled photographs as PIL images."""
    import skimage.data
    from PIL import Image

    return [Image.fromarray(getattr(skimage.data, name)()) for name in PHOTOS[:limit]]


def sample_photos(preprocess: Preprocess, limit: int = len(PHOTOS)) -> np.ndarray:
    """The photographs through ``preprocess`` -> float32 NCHW."""
    return np.stack([preprocess(image) for image in load_photos(limit)]).astype(np.float32)


class PhotoCrops:
    """A dataset-like list of seeded random crops / flips of the photographs (no labels)."""

    def __init__(self, preprocess: Preprocess, count: int, seed: int = 0) -> None:
        self.preprocess = preprocess
        self.photos = load_photos()
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
