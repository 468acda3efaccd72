"""The parity gates (DESIGN.md "Tolerances"): ``compare`` makes one :class:`Comparison`, ``GATES`` judges it."""

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
    result = Comparison(
        source=source, samples=len(ref),
        top1_agreement=float(np.mean(ref.argmax(1) == cand.argmax(1))),
        max_abs_diff=float(diff.max()) if diff is not None else None,
        mean_abs_diff=float(diff.mean()) if diff is not None else None,
        max_abs_ref=float(np.max(np.abs(ref))),
    )
    if labels is not None:
        result.accuracy_ref = float(np.mean(ref.argmax(1) == labels))
        result.accuracy = float(np.mean(cand.argmax(1) == labels))
        result.accuracy_drop_points = round(100.0 * (result.accuracy_ref - result.accuracy), 6)
        if cand.shape[1] > 5:
            result.top5 = topk_accuracy(cand, labels, 5)
    return result


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
        return ", ".join(parts)

    def failures(self, cmp: Comparison) -> list[str]:
        """Why ``cmp`` fails this gate (empty when it passes)."""
        out = []
        if not cmp.finite:
            out.append("non-finite logits (NaN/Inf)")
        elif self.max_abs_diff is not None and not cmp.max_abs_diff <= self.max_abs_diff:  # type: ignore[operator]
            out.append(f"max abs logit diff {cmp.max_abs_diff:.3g} > {self.max_abs_diff:g}")
        if self.min_agreement is not None and not cmp.top1_agreement >= self.min_agreement:
            out.append(f"top-1 agreement {cmp.top1_agreement * 100:.2f}% < {self.min_agreement * 100:g}%")
        if self.max_drop_points is not None and cmp.accuracy_drop_points is not None:
            drop = cmp.accuracy_drop_points
            if not (math.isfinite(drop) and drop <= self.max_drop_points + 1e-9):
                out.append(f"top-1 accuracy drop {drop:.2f} points > {self.max_drop_points:g}")
        return out

    def check(self, cmp: Comparison, what: str) -> Comparison:
        """``cmp`` when it passes, else GateFailure naming ``what`` and the inputs."""
        problems = self.failures(cmp)
        if problems:
            raise GateFailure(f"{what}: {'; '.join(problems)} ({cmp.source})")
        return cmp


# DESIGN.md "Tolerances": the same gate for an ONNX file and a TensorRT engine of a precision.
GATES: dict[str, Gate] = {
    "fp32": Gate(max_abs_diff=1e-4, min_agreement=1.0),
    "fp16": Gate(min_agreement=0.995),
    "int8": Gate(min_agreement=0.99, max_drop_points=0.5),
}


def gate_for(precision: str) -> Gate:
    try:
        return GATES[precision]
    except KeyError:
        raise BninceptionError(f"no gate for precision {precision!r} (gates: {', '.join(GATES)})") from None
