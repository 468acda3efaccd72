"""The parity gates (docs/DESIGN.md "Gates"): ``compare`` makes one :class:`Comparison`, ``GATES`` judges it.

The agreement and accuracy gates count images: a candidate fails only when it disagrees with (or loses
against) the reference on more images than quantization noise alone reaches at the gate's confidence
(:data:`CONFIDENCE`), so one image's flip near a threshold never decides a verdict.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from bninception.core.errors import BninceptionError, GateFailure


@dataclass
class Comparison:
    """Candidate vs reference logits: fractions in [0, 1], the accuracy drop in points, diffs None if non-finite."""

    source: str
    samples: int
    top1_agreement: float
    max_abs_diff: float | None
    mean_abs_diff: float | None
    max_abs_ref: float
    accuracy_ref: float | None = None
    accuracy: float | None = None
    top5: float | None = None
    accuracy_drop_points: float | None = None
    disagreements: int | None = None  # images whose top-1 differs from the reference's
    lost: int | None = None  # images the reference gets right and the candidate wrong
    gained: int | None = None  # images the reference gets wrong and the candidate right

    @property
    def finite(self) -> bool:
        return self.max_abs_diff is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Comparison:
        return cls(**data)


def topk_accuracy(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of rows whose label is among the ``k`` largest logits."""
    k = min(k, logits.shape[1])
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return float(np.mean(np.any(top == labels[:, None], axis=1)))


def compare(reference: np.ndarray, candidate: np.ndarray, source: str,
            labels: np.ndarray | None = None) -> Comparison:
    """Compare two logit arrays of one shape (rows = inputs); with ``labels``, also accuracies."""
    if reference.shape != candidate.shape:
        raise BninceptionError(f"{source}: output shapes differ: reference {reference.shape}, "
                               f"candidate {candidate.shape}")
    if len(reference) == 0:
        raise BninceptionError(f"{source}: nothing to compare (no inputs)")
    ref = reference.reshape(len(reference), -1).astype(np.float64)
    cand = candidate.reshape(len(candidate), -1).astype(np.float64)
    finite = bool(np.all(np.isfinite(cand)))
    diff = np.abs(ref - cand) if finite else None
    ref_top, cand_top = ref.argmax(1), cand.argmax(1)
    same = ref_top == cand_top
    result = Comparison(
        source=source, samples=len(ref),
        top1_agreement=float(np.mean(same)), disagreements=int(np.sum(~same)),
        max_abs_diff=float(diff.max()) if diff is not None else None,
        mean_abs_diff=float(diff.mean()) if diff is not None else None,
        max_abs_ref=float(np.max(np.abs(ref))),
    )
    if labels is not None:
        ref_right, cand_right = ref_top == labels, cand_top == labels
        result.accuracy_ref = float(np.mean(ref_right))
        result.accuracy = float(np.mean(cand_right))
        result.accuracy_drop_points = round(100.0 * (result.accuracy_ref - result.accuracy), 6)
        result.lost, result.gained = int(np.sum(ref_right & ~cand_right)), int(np.sum(~ref_right & cand_right))
        if cand.shape[1] > 5:
            result.top5 = topk_accuracy(cand, labels, 5)
    return result


CONFIDENCE = 0.99  # a candidate as good as the gate's target passes at least this often
Z_ONE_SIDED = 2.326  # the standard normal's 0.99 quantile


def allowed_disagreements(samples: int, rate: float, confidence: float = CONFIDENCE) -> int:
    """The most images a candidate whose true disagreement rate is ``rate`` disagrees on, at ``confidence``:
    the ``confidence`` quantile of Binomial(samples, rate) (0 when ``rate`` is 0)."""
    if rate <= 0:
        return 0
    if rate >= 1:
        return samples
    log_p, log_q, log_n = math.log(rate), math.log1p(-rate), math.lgamma(samples + 1)
    total = 0.0
    for k in range(samples + 1):
        total += math.exp(log_n - math.lgamma(k + 1) - math.lgamma(samples - k + 1) + k * log_p + (samples - k) * log_q)
        if total >= confidence:
            return k
    return samples


def allowed_loss(samples: int, drop_points: float, discordant: int) -> int:
    """The most images a candidate may lose net (lost - gained) when its true accuracy drop is
    ``drop_points``: the drop in images plus McNemar's noise bound over the ``discordant`` images on which
    reference and candidate differ in being right (net loss has variance ``discordant`` by symmetric flips)."""
    return math.floor(drop_points / 100.0 * samples + Z_ONE_SIDED * math.sqrt(discordant) + 1e-9)


@dataclass(frozen=True)
class Gate:
    """Bounds a Comparison must meet; unset bounds are not checked. Non-finite logits never pass."""

    max_abs_diff: float | None = None
    min_agreement: float | None = None  # fraction
    max_drop_points: float | None = None  # top-1 accuracy drop, percentage points

    def describe(self) -> str:
        parts = []
        if self.max_abs_diff is not None:
            parts.append(f"max diff<={self.max_abs_diff:g}")
        if self.min_agreement is not None:
            parts.append(f"agree>={self.min_agreement * 100:g}%")
        if self.max_drop_points is not None:
            parts.append(f"drop<={self.max_drop_points:g}pt")
        if (self.min_agreement is not None and self.min_agreement < 1) or self.max_drop_points is not None:
            parts.append("beyond noise")
        return ", ".join(parts)

    def failures(self, cmp: Comparison) -> list[str]:
        """Why ``cmp`` fails this gate (empty when it passes)."""
        out = []
        if not cmp.finite:
            out.append("non-finite logits (NaN/Inf)")
        elif self.max_abs_diff is not None and not cmp.max_abs_diff <= self.max_abs_diff:  # type: ignore[operator]
            out.append(f"max abs logit diff {cmp.max_abs_diff:.3g} > {self.max_abs_diff:g}")
        if self.min_agreement is not None:
            out += self._agreement(cmp, self.min_agreement)
        if self.max_drop_points is not None and cmp.accuracy_drop_points is not None:
            out += self._drop(cmp, self.max_drop_points)
        return out

    @staticmethod
    def _agreement(cmp: Comparison, minimum: float) -> list[str]:
        if cmp.disagreements is None:  # a comparison recorded before counts were kept
            ok = cmp.top1_agreement >= minimum
            return [] if ok else [f"top-1 agreement {cmp.top1_agreement * 100:.2f}% < {minimum * 100:g}%"]
        allowed = allowed_disagreements(cmp.samples, 1.0 - minimum)
        if cmp.disagreements <= allowed:
            return []
        return [f"top-1 agreement {cmp.top1_agreement * 100:.2f}%: {cmp.disagreements} of {cmp.samples} images "
                f"disagree, more than the {allowed} that a {minimum * 100:g}% file reaches by noise"]

    @staticmethod
    def _drop(cmp: Comparison, most: float) -> list[str]:
        drop = cmp.accuracy_drop_points
        assert drop is not None
        if not math.isfinite(drop):
            return [f"top-1 accuracy drop {drop} points"]
        if cmp.lost is None or cmp.gained is None:
            return [] if drop <= most + 1e-9 else [f"top-1 accuracy drop {drop:.2f} points > {most:g}"]
        net, allowed = cmp.lost - cmp.gained, allowed_loss(cmp.samples, most, cmp.lost + cmp.gained)
        if net <= allowed:
            return []
        return [f"top-1 accuracy drop {drop:.2f} points: {net} images lost net ({cmp.lost} lost, {cmp.gained} "
                f"gained), more than the {allowed} that a {most:g}-point drop reaches by noise"]

    def check(self, cmp: Comparison, what: str) -> Comparison:
        """``cmp`` when it passes, else GateFailure naming ``what`` and the inputs."""
        problems = self.failures(cmp)
        if problems:
            raise GateFailure(f"{what}: {'; '.join(problems)} ({cmp.source})")
        return cmp


# docs/DESIGN.md "Gates": the same gate for an ONNX file and a TensorRT engine of a precision.
GATES: dict[str, Gate] = {
    "fp32": Gate(max_abs_diff=1e-4, min_agreement=1.0),
    "fp16": Gate(min_agreement=0.995),
    "int8": Gate(min_agreement=0.99, max_drop_points=0.5),
}


def gate_for(precision: str) -> Gate:
    """The parity gate of ``precision`` (fp32, fp16, int8); BninceptionError for another."""
    try:
        return GATES[precision]
    except KeyError:
        raise BninceptionError(f"no gate for precision {precision!r} (gates: {', '.join(GATES)})") from None
