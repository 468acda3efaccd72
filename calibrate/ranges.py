"""Activation ranges (amax) from calibration batches: max, percentile, entropy (TensorRT-style KL).

Two streaming passes: ``max |x|`` per tensor, then a histogram of ``|x|`` over ``[0, max]``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from bninception.core.errors import BninceptionError

if TYPE_CHECKING:
    import onnx

METHODS = ("percentile", "entropy", "minmax")  # the first is the default
BINS = 2048          # as TensorRT's / pytorch-quantization's histogram calibrators
ENTROPY_LEVELS = 128  # positive levels of symmetric int8
ENTROPY_START = 128  # the smallest candidate threshold, in bins


@dataclass
class TensorStats:
    """``amax`` (max |x|) and ``amin`` (min x) per tensor, and its ``|x|`` histogram over ``[0, amax]``."""

    amax: dict[str, float]
    amin: dict[str, float]
    hist: dict[str, np.ndarray]
    samples: int


def with_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of ``model`` that also returns the tensors ``names`` (float32) as graph outputs."""
    import onnx
    from onnx import helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    present = {o.name for o in out.graph.output}
    for name in names:
        if name not in present:
            out.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return out


def _stream(model: onnx.ModelProto, names: list[str], batches: Iterable[np.ndarray]
            ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Every batch's values of the tensors ``names`` (instrumentation, so a session, not a Runner)."""
    from bninception.core.ort import create_session

    sess = create_session(with_outputs(model, names), optimization="disable", spinning=False,
                          what="the calibration model")
    input_name = sess.get_inputs()[0].name
    for batch in batches:
        values = sess.run(names, {input_name: np.ascontiguousarray(batch, dtype=np.float32)})
        yield len(batch), dict(zip(names, values, strict=True))


def _ranges(model: onnx.ModelProto, names: list[str], batches: Iterable[np.ndarray]
            ) -> tuple[dict[str, float], dict[str, float], int]:
    """First pass: max |x| and min x per tensor, and the number of images."""
    amax = dict.fromkeys(names, 0.0)
    amin = dict.fromkeys(names, 0.0)
    samples = 0
    for count, values in _stream(model, names, batches):
        samples += count
        for name, value in values.items():
            if not np.all(np.isfinite(value)):
                raise BninceptionError(f"calibration: tensor {name!r} has NaN/Inf values")
            if value.size:
                amax[name] = max(amax[name], float(np.max(np.abs(value))))
                amin[name] = min(amin[name], float(np.min(value)))
    if samples == 0:
        raise BninceptionError("calibration: the reader gave no images")
    return amax, amin, samples


def _histograms(model: onnx.ModelProto, names: list[str], batches: Iterable[np.ndarray], amax: dict[str, float],
                samples: int, bins: int) -> dict[str, np.ndarray]:
    """Second pass: a histogram of |x| over [0, amax] per tensor (the same images as the first pass)."""
    hist = {name: np.zeros(bins, np.int64) for name in names}
    again = 0
    for count, values in _stream(model, names, batches):
        again += count
        for name, value in values.items():
            top = amax[name]
            if top <= 0:
                hist[name][0] += value.size
                continue
            index = np.minimum((np.abs(value.ravel()) * (bins / top)).astype(np.int64), bins - 1)
            hist[name] += np.bincount(index, minlength=bins)
    if again != samples:
        raise BninceptionError(f"calibration reader gave {again} images on the second pass, {samples} on the first")
    return hist


def collect(model: onnx.ModelProto, names: list[str], batches: Callable[[], Iterable[np.ndarray]],
            histograms: bool, bins: int = BINS) -> TensorStats:
    """Run the calibration batches through ONNX Runtime (optimizations off) and gather statistics."""
    if not names:
        raise BninceptionError("no activation tensors to calibrate (no Conv/Gemm/MatMul with weights)")
    amax, amin, samples = _ranges(model, names, batches())
    hist = _histograms(model, names, batches(), amax, samples, bins) if histograms else {}
    return TensorStats(amax=amax, amin=amin, hist=hist, samples=samples)


def percentile_amax(hist: np.ndarray, top: float, percentile: float) -> float:
    """The upper edge of the bin where the cumulative share of ``|x|`` reaches ``percentile``."""
    if not 0 < percentile <= 100:
        raise BninceptionError(f"--percentile must be in (0, 100], got {percentile}")
    total = hist.sum()
    if total == 0 or top <= 0:
        return float(top)
    cdf = np.cumsum(hist) / total
    index = int(np.searchsorted(cdf, percentile / 100.0, side="left"))
    index = min(index, len(hist) - 1)
    return float(top * (index + 1) / len(hist))


def _xlogx(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x * np.log(np.where(x > 0, x, 1.0)), 0.0)


@functools.lru_cache(maxsize=4)
def _group_edges(n: int, levels: int, start: int) -> tuple[np.ndarray, np.ndarray]:
    """Candidates ``i`` and, per candidate, the first bin of each group: ``ceil(g * i / levels)``."""
    cand = np.arange(max(start, levels), n + 1)
    edges = (np.arange(levels + 1)[None, :] * cand[:, None] + levels - 1) // levels
    return cand, edges


def entropy_amax(hist: np.ndarray, top: float, levels: int = ENTROPY_LEVELS,
                 start: int = ENTROPY_START) -> float:
    """TensorRT's entropy calibration: the threshold whose 128-level quantization keeps KL(P||Q) lowest.

    The zero bin takes bin 1's count and ties go to the largest threshold, as in NVIDIA's
    pytorch-quantization; prefix sums make each candidate O(levels).
    """
    bins = hist.astype(np.float64).copy()
    n = len(bins)
    if top <= 0 or n <= start or bins.sum() == 0:
        return float(top)
    bins[0] = bins[1]
    total = bins.sum()
    if total <= 0:
        return float(top)
    mass = np.concatenate([[0.0], np.cumsum(bins)])
    filled = np.concatenate([[0], np.cumsum(bins > 0)])
    plogp_prefix = np.concatenate([[0.0], np.cumsum(_xlogx(bins))])
    cand, edges = _group_edges(n, levels, start)
    sums = mass[edges[:, 1:]] - mass[edges[:, :-1]]
    counts = filled[edges[:, 1:]] - filled[edges[:, :-1]]
    avg = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
    plogq = np.sum(np.where(sums > 0, sums * np.log(np.where(avg > 0, avg, 1.0)), 0.0), axis=1)
    last = bins[cand - 1]
    outliers = total - mass[cand]
    q_last = np.where(last > 0, avg[:, -1], 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogq = plogq + np.where(outliers > 0, outliers * np.log(q_last), 0.0)
        plogp = plogp_prefix[cand - 1] + _xlogx(last + outliers)
        kl = (plogp - plogq) / total + np.log(mass[cand] / total)
    kl = np.where(np.isfinite(kl), kl, np.inf)
    if not np.any(np.isfinite(kl)):
        return float(top)
    best = cand[np.flatnonzero(kl <= kl.min() + 1e-12)[-1]]
    return float(top * best / n)


def compute_amax(stats: TensorStats, method: str, percentile: float = 99.99,
                 keep_max: Iterable[str] = ()) -> dict[str, float]:
    """Per-tensor amax for ``method``; tensors in ``keep_max`` (the network input) keep their observed max."""
    if method not in METHODS:
        raise BninceptionError(f"--method must be one of {METHODS}, got {method!r}")
    if method == "minmax":
        return dict(stats.amax)
    if not stats.hist:
        raise BninceptionError(f"method {method!r} needs histograms (collect with histograms=True)")
    if method == "percentile":
        amax = {n: percentile_amax(stats.hist[n], stats.amax[n], percentile) for n in stats.amax}
    else:
        amax = {n: entropy_amax(stats.hist[n], stats.amax[n]) for n in stats.amax}
    for name in keep_max:
        if name in amax:
            amax[name] = stats.amax[name]
    return amax
