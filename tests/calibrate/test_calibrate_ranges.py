"""Calibration ranges: max, percentile, entropy (checked against a direct per-candidate KL loop)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bninception.calibrate.cache import Calibration, load_calibration
from bninception.calibrate.data import calibration_subset
from bninception.calibrate.ranges import TensorStats, compute_amax, entropy_amax, percentile_amax
from bninception.core.errors import BninceptionError


def entropy_reference(hist: np.ndarray, top: float, levels: int = 128, start: int = 128) -> float:
    """TensorRT's algorithm written out: one candidate at a time, KL on explicit P and Q."""
    bins = hist.astype(np.float64).copy()
    n = len(bins)
    bins[0] = bins[1]
    best_i, best = n, np.inf
    for i in range(start, n + 1):
        p = bins[:i].copy()
        p[-1] += bins[i:].sum()
        group = (np.arange(i) * levels) // i
        nonzero = bins[:i] > 0
        sums = np.bincount(group, weights=bins[:i], minlength=levels)
        counts = np.bincount(group, weights=nonzero.astype(float), minlength=levels)
        avg = np.divide(sums, counts, out=np.zeros(levels), where=counts > 0)
        q = np.where(nonzero, avg[group], 0.0)
        pn, qn = p / p.sum(), q / q.sum()
        mask = pn > 0
        kl = np.inf if np.any(qn[mask] <= 0) else float(np.sum(pn[mask] * np.log(pn[mask] / qn[mask])))
        if kl <= best + 1e-12:
            best_i, best = i, kl
    return top * best_i / n


def histogram(values: np.ndarray, bins: int = 2048) -> tuple[np.ndarray, float]:
    top = float(np.abs(values).max())
    index = np.minimum((np.abs(values) * bins / top).astype(np.int64), bins - 1)
    return np.bincount(index, minlength=bins), top


@pytest.mark.parametrize("case", ["gauss", "heavy", "relu", "gap"])
def test_entropy_matches_the_direct_algorithm(case: str) -> None:
    rng = np.random.default_rng(7)
    x = rng.standard_normal(50_000)
    if case == "heavy":
        x = x * rng.exponential(size=x.size) ** 2
    if case == "relu":
        x = np.maximum(x, 0)
    hist, top = histogram(x)
    if case == "gap":
        hist[1200:1800] = 0
    fast = entropy_amax(hist, top)
    assert fast == pytest.approx(entropy_reference(hist, top), rel=1e-12)
    assert 0 < fast <= top
    if case == "heavy":
        assert fast < 0.5 * top  # outliers are clipped


def test_percentile_and_keep_max() -> None:
    hist = np.zeros(1000, np.int64)
    hist[:900] = 1   # 900 values spread over [0, 0.9)
    hist[999] = 1    # one outlier at the top
    assert percentile_amax(hist, 1.0, 99.0) == pytest.approx(0.892, abs=1e-3)
    assert percentile_amax(hist, 1.0, 100.0) == pytest.approx(1.0)
    with pytest.raises(BninceptionError, match="percentile"):
        percentile_amax(hist, 1.0, 0.0)
    stats = TensorStats(amax={"data": 1.0, "a": 1.0}, amin={"data": -1.0, "a": 0.0},
                        hist={"data": hist, "a": hist}, samples=4)
    amax = compute_amax(stats, "percentile", 99.0, keep_max=["data"])
    assert amax["data"] == 1.0 and amax["a"] < 0.9
    assert compute_amax(stats, "minmax") == {"data": 1.0, "a": 1.0}
    with pytest.raises(BninceptionError, match="method"):
        compute_amax(stats, "mse")


class CountingDataset:
    """Items built on demand; counts how many were ever built (the reader must not pre-load)."""

    def __init__(self, size: int) -> None:
        self.size, self.built, self.augment = size, 0, True

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        assert not self.augment, "calibration must read un-augmented images"
        self.built += 1
        return np.full((1, 4, 4), index, np.float32), 0


def test_reader_streams_batches_and_hashes_data() -> None:
    data = CountingDataset(1000)
    reader = calibration_subset(data, samples=100, seed=3)
    plain = reader.dataset
    sizes = []
    for batch in reader:
        sizes.append(len(batch))
        assert plain.built <= sum(sizes)  # never more than one batch ahead
    assert sum(sizes) == 100 and sizes == [64, 36]
    first = reader.sha256
    list(reader)
    assert reader.sha256 == first and data.augment  # deterministic; the original is untouched
    other = calibration_subset(data, samples=100, seed=4)
    list(other)
    assert other.sha256 != first
    with pytest.raises(BninceptionError, match="--samples"):
        calibration_subset(data, samples=0)


def test_cache_refuses_another_model(tmp_path) -> None:
    calib = Calibration(method="entropy", percentile=None, samples=8, bins=2048, model_sha256="a" * 64,
                        data_sha256="b" * 64, data_source="test", amax={"x": 1.5}, minmax={"x": 2.0},
                        minimum={"x": 0.0})
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(calib.to_json()))
    loaded = load_calibration(path, "a" * 64)
    assert loaded.amax == {"x": 1.5} and loaded.method == "entropy"
    with pytest.raises(BninceptionError, match="computed on the model with sha256 aaaaaaaaaaaa"):
        load_calibration(path, "c" * 64)
    path.write_text("{not json")
    with pytest.raises(BninceptionError, match="not valid JSON"):
        load_calibration(path, "a" * 64)
    broken = calib.to_json()
    broken["tensors"]["x"]["amax"] = "big"
    path.write_text(json.dumps(broken))
    with pytest.raises(BninceptionError, match="not a complete calibration cache"):
        load_calibration(path, "a" * 64)
    broken["tensors"]["x"]["amax"] = -1.0
    path.write_text(json.dumps(broken))
    with pytest.raises(BninceptionError, match="finite and non-negative"):
        load_calibration(path, "a" * 64)
