"""Datasets: the built-in digits (scikit-learn) and ImageFolder trees, with augmentation seeded per item."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from bninception.core.errors import BninceptionError
from bninception.core.preprocess import Preprocess, load_image
from bninception.model.config import default_image_size

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
DIGITS_PAD = 2  # random translation of up to 2 px (the digits analogue of random crops)


class AugmentedDataset(Dataset):
    """Base: ``set_epoch`` changes the augmentation draw of every item deterministically."""

    def __init__(self, labels: np.ndarray, augment: bool, seed: int) -> None:
        self.labels = labels.astype(np.int64)
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def rng(self, index: int) -> random.Random:
        return random.Random(f"{self.seed}:{self.epoch}:{index}")

    def __len__(self) -> int:
        return len(self.labels)


class DigitsDataset(AugmentedDataset):
    """Preprocessed digits held in memory as a float32 tensor (N, 1, S, S)."""

    def __init__(self, images: torch.Tensor, labels: np.ndarray, augment: bool, seed: int) -> None:
        super().__init__(labels, augment, seed)
        self.images = images
        self.background = float(images.min())

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index]
        if self.augment:
            rng = self.rng(index)
            dx, dy = rng.randint(-DIGITS_PAD, DIGITS_PAD), rng.randint(-DIGITS_PAD, DIGITS_PAD)
            image = torch.roll(image, shifts=(dy, dx), dims=(1, 2))
        return image, int(self.labels[index])


class ImageFolderDataset(AugmentedDataset):
    """Image files; training: random crop of the resized image + horizontal flip, eval: centre crop."""

    def __init__(self, files: list[Path], labels: np.ndarray, preprocess: Preprocess, augment: bool,
                 seed: int) -> None:
        super().__init__(labels, augment, seed)
        self.files = files
        self.preprocess = preprocess

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = load_image(str(self.files[index]))
        pre = self.preprocess
        if self.augment:
            rng = self.rng(index)
            bigger = Preprocess(size=pre.resize, resize=pre.resize, channel_order=pre.channel_order,
                                input_range=pre.input_range, mean=pre.mean, std=pre.std)
            pixels = bigger.to_pixels(image)
            top = rng.randint(0, pre.resize - pre.size)
            left = rng.randint(0, pre.resize - pre.size)
            pixels = pixels[top:top + pre.size, left:left + pre.size]
            if rng.random() < 0.5:
                pixels = pixels[:, ::-1]
            array = pre.normalize(pixels)
        else:
            array = pre(image)
        return torch.from_numpy(array), int(self.labels[index])


@dataclass
class DatasetBundle:
    """Train / val / test splits with their labels and the input convention."""

    name: str
    train: AugmentedDataset
    val: AugmentedDataset
    test: AugmentedDataset
    labels: list[str]
    preprocess: Preprocess

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def in_channels(self) -> int:
        return self.preprocess.channels


def stratified_split(labels: np.ndarray, fractions: tuple[float, float], seed: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of train / val / test, stratified per class, fixed by ``seed``."""
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[], [], []]
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        n_val = max(1, round(len(idx) * fractions[0])) if len(idx) >= 3 else 0
        n_test = max(1, round(len(idx) * fractions[1])) if len(idx) >= 3 else 0
        parts[1].extend(idx[:n_val])
        parts[2].extend(idx[n_val:n_val + n_test])
        parts[0].extend(idx[n_val + n_test:])
    return tuple(np.sort(np.asarray(p, dtype=np.int64)) for p in parts)  # type: ignore[return-value]


def digits_preprocess(image_size: int) -> Preprocess:
    # mean/std of the digits pixels (0..1 scale) after upsampling; fixed so serving can apply them.
    return Preprocess(size=image_size, resize=image_size, channel_order="GRAY", input_range=1.0,
                      mean=(0.3050,), std=(0.3239,))


def load_digits_bundle(image_size: int = 32, seed: int = 0) -> DatasetBundle:
    """scikit-learn's 1,797 real 8x8 digits, upsampled to ``image_size``; split 60/20/20, stratified."""
    from PIL import Image
    from sklearn.datasets import load_digits

    if not 8 <= image_size <= 512:
        raise BninceptionError(f"--image-size must be in [8, 512], got {image_size}")
    digits = load_digits()
    labels = digits.target.astype(np.int64)
    pre = digits_preprocess(image_size)
    pixels = np.clip(digits.images * (255.0 / 16.0), 0, 255).astype(np.uint8)
    images = np.stack([pre(Image.fromarray(p, mode="L")) for p in pixels])
    tensor = torch.from_numpy(images)
    train_idx, val_idx, test_idx = stratified_split(labels, (0.2, 0.2), seed)
    return DatasetBundle(
        name="digits",
        train=DigitsDataset(tensor[train_idx], labels[train_idx], augment=True, seed=seed),
        val=DigitsDataset(tensor[val_idx], labels[val_idx], augment=False, seed=seed),
        test=DigitsDataset(tensor[test_idx], labels[test_idx], augment=False, seed=seed),
        labels=[str(i) for i in range(10)],
        preprocess=pre,
    )


def _scan_classes(root: Path) -> tuple[list[Path], np.ndarray, list[str]]:
    if not root.is_dir():
        raise BninceptionError(f"dataset folder {root} does not exist")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise BninceptionError(f"{root} has no class folders (expected one folder per class)")
    files: list[Path] = []
    labels: list[int] = []
    for index, name in enumerate(classes):
        found = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise BninceptionError(f"class folder {root / name} has no images ({sorted(IMAGE_SUFFIXES)})")
        files.extend(found)
        labels.extend([index] * len(found))
    return files, np.asarray(labels, dtype=np.int64), classes


def imagenet_preprocess(image_size: int) -> Preprocess:
    return Preprocess(size=image_size, resize=round(image_size * 256 / 224))


def load_image_folder_bundle(path: str, image_size: int = 224, seed: int = 0,
                             preprocess: Preprocess | None = None) -> DatasetBundle:
    """``PATH/{train,val,test}/CLASS/*.jpg``, or ``PATH/CLASS/*.jpg`` split 70/15/15 (stratified)."""
    root = Path(path)
    pre = preprocess or imagenet_preprocess(image_size)
    splits = ("train", "val", "test")
    if (root / "train").is_dir():
        found = {split: _scan_classes(root / split) for split in splits if (root / split).is_dir()}
        names = found["train"][2]
        for split, (_, _, other) in found.items():
            if other != names:
                raise BninceptionError(f"{root / split} classes {other} differ from train's {names}")
        found.setdefault("val", found.get("test") or found["train"])
        found.setdefault("test", found["val"])
        parts = {split: found[split][:2] for split in splits}
    else:
        files, labels, names = _scan_classes(root)
        indices = stratified_split(labels, (0.15, 0.15), seed)
        parts = {split: ([files[i] for i in idx], labels[idx]) for split, idx in zip(splits, indices, strict=True)}

    def make(split: str) -> ImageFolderDataset:
        return ImageFolderDataset(*parts[split], pre, augment=split == "train", seed=seed)

    return DatasetBundle(str(root), make("train"), make("val"), make("test"), names, pre)


def load_bundle(data: str, image_size: int | None = None, seed: int = 0,
                preprocess: Preprocess | None = None) -> DatasetBundle:
    """``digits`` (built-in) or a path to an ImageFolder tree."""
    if data == "digits":
        return load_digits_bundle(image_size or default_image_size(data), seed)
    return load_image_folder_bundle(data, image_size or default_image_size(data), seed, preprocess)


def stack_split(dataset: Dataset, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A whole (eval) split as numpy arrays, optionally the first ``limit`` items."""
    count = len(dataset) if limit is None else min(limit, len(dataset))  # type: ignore[arg-type]
    images, labels = zip(*(dataset[i] for i in range(count)), strict=True)
    return torch.stack(images).numpy(), np.asarray(labels, dtype=np.int64)


def load_run_bundle(run: Any) -> DatasetBundle | None:
    """The dataset a run was trained on (from its manifest), or None (e.g. imported weights)."""
    record = run.manifest()["stages"].get("train")
    if record is None:
        return None
    params = record["params"]
    return load_bundle(params["data"], params["image_size"], params["seed"])


def run_images(bundle: DatasetBundle | None, split: str, preprocess: Preprocess | None, count: int,
               seed: int = 0) -> tuple[Any, str]:
    """The images a stage of a run judges or calibrates on, and where they come from: ``split`` ("train",
    "test") of the run's dataset ``bundle``, or for a run without one (imported weights) ``count`` crops
    of scikit-image's photographs, without labels."""
    if bundle is not None:
        data = getattr(bundle, split)
        return data, f"{bundle.name} {split} split"
    if preprocess is None:
        raise BninceptionError("the run records no dataset and the model has no preprocessing metadata: "
                               "no images to judge or calibrate on")
    from bninception.model.photos import PhotoCrops

    return PhotoCrops(preprocess, count, seed=seed), "scikit-image photo crops (no labels)"
