"""Datasets: digits split, ImageFolder loading and the errors that name the bad path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bninception.core.errors import BninceptionError
from bninception.model.data import load_bundle, load_digits_bundle, stack_split, stratified_split


def test_digits_split_is_fixed_stratified_and_normalised() -> None:
    a = load_digits_bundle(32, seed=0)
    b = load_digits_bundle(32, seed=0)
    assert (len(a.train), len(a.val), len(a.test)) == (1079, 359, 359)
    assert np.array_equal(a.test.labels, b.test.labels)
    assert set(np.bincount(a.test.labels)) <= {35, 36, 37}  # ~20% of each class
    x, _ = stack_split(a.train)
    assert x.shape == (1079, 1, 32, 32)
    assert abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1) < 0.05
    a.train.set_epoch(1)
    first = a.train[0][0]
    a.train.set_epoch(2)
    assert not np.array_equal(first.numpy(), a.train[0][0].numpy())  # augmentation changes per epoch
    a.train.set_epoch(1)
    assert np.array_equal(first.numpy(), a.train[0][0].numpy())  # ... deterministically


def test_stratified_split_keeps_every_class_in_every_split() -> None:
    labels = np.repeat(np.arange(4), [10, 20, 30, 40])
    train, val, test = stratified_split(labels, (0.15, 0.15), seed=1)
    assert len(set(train) | set(val) | set(test)) == 100
    for part in (train, val, test):
        assert set(labels[part]) == {0, 1, 2, 3}


def _photo_folder(root: Path, per_class: int = 4) -> Path:
    from skimage import data

    for name, image in (("astronaut", data.astronaut()), ("coffee", data.coffee())):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(np.roll(image, 13 * i, axis=1)).save(root / name / f"{i}.jpg")
    return root


def test_image_folder_loads_with_paper_preprocessing(tmp_path: Path) -> None:
    bundle = load_bundle(str(_photo_folder(tmp_path / "photos", 8)), image_size=64)
    assert bundle.labels == ["astronaut", "coffee"] and bundle.in_channels == 3
    assert len(bundle.train) + len(bundle.val) + len(bundle.test) == 16
    image, label = bundle.test[0]
    assert tuple(image.shape) == (3, 64, 64) and label in (0, 1)
    bundle.train.set_epoch(0)
    crop_a = bundle.train[0][0]
    bundle.train.set_epoch(5)
    assert not np.array_equal(crop_a.numpy(), bundle.train[0][0].numpy())


def test_bad_folders_and_images_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(BninceptionError, match="does not exist"):
        load_bundle(str(tmp_path / "missing"))
    root = _photo_folder(tmp_path / "photos")
    (root / "empty").mkdir()
    with pytest.raises(BninceptionError, match=r"class folder .*empty has no images"):
        load_bundle(str(root))
    (root / "empty" / "broken.png").write_bytes(b"\x89PNG not really")
    bundle = load_bundle(str(root), image_size=32)
    datasets = (bundle.train, bundle.val, bundle.test)
    with pytest.raises(BninceptionError, match=r"broken\.png: not a readable image"):
        for dataset in datasets:
            for i in range(len(dataset)):
                dataset[i]


def test_presplit_image_folder_uses_its_splits_and_refuses_other_classes(tmp_path: Path) -> None:
    root = tmp_path / "split"
    _photo_folder(root / "train", 3)
    _photo_folder(root / "test", 2)
    bundle = load_bundle(str(root), image_size=32)
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (6, 4, 4)  # no val/: the test split
    assert bundle.train.augment and not bundle.val.augment and bundle.labels == ["astronaut", "coffee"]
    (root / "test" / "coffee").rename(root / "test" / "tea")
    with pytest.raises(BninceptionError, match=r"test classes \['astronaut', 'tea'\] differ from train's"):
        load_bundle(str(root))
