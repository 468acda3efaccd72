"""The shared comparison record and the parity gates (core.gates): arithmetic, NaN, units."""

from __future__ import annotations

import numpy as np
import pytest

from bninception.core.errors import BninceptionError, GateFailure
from bninception.core.gates import GATES, Gate, compare, gate_for, topk_accuracy

LABELS = np.array([0, 1, 2, 1])
REFERENCE = np.eye(3, dtype=np.float32)[LABELS] * 5


def test_fp32_gate_needs_tiny_diff_and_full_agreement() -> None:
    close = compare(REFERENCE, REFERENCE + 5e-5, "t", LABELS)
    assert close.top1_agreement == 1.0 and close.max_abs_diff == pytest.approx(5e-5, rel=1e-2)
    assert GATES["fp32"].failures(close) == []
    far = compare(REFERENCE, REFERENCE + 2e-4, "t", LABELS)
    assert GATES["fp32"].failures(far) == [f"max abs logit diff {far.max_abs_diff:.3g} > 0.0001"]
    flipped = REFERENCE.copy()
    flipped[0] = [0, 6, 0]
    cmp = compare(REFERENCE, flipped, "t", LABELS)
    assert cmp.top1_agreement == 0.75 and cmp.accuracy == 0.75 and cmp.accuracy_ref == 1.0
    assert cmp.accuracy_drop_points == pytest.approx(25.0)
    assert len(GATES["fp32"].failures(cmp)) == 2
    with pytest.raises(GateFailure, match=r"export parity: .*agreement 75.00% < 100% \(t\)"):
        GATES["fp32"].check(cmp, "export parity")


def test_int8_gate_bounds_the_accuracy_drop_in_points() -> None:
    labels = np.arange(1000) % 10
    reference = np.eye(10, dtype=np.float32)[labels]
    candidate = reference.copy()
    candidate[:4] = np.roll(candidate[:4], 1, axis=1)  # 4 of 1000 wrong: 0.4 points, 99.6% agreement
    assert GATES["int8"].failures(compare(reference, candidate, "t", labels)) == []
    candidate[:6] = np.roll(reference[:6], 1, axis=1)  # 0.6 points
    assert "accuracy drop 0.60 points > 0.5" in GATES["int8"].failures(compare(reference, candidate, "t", labels))[0]
    candidate[:15] = np.roll(reference[:15], 1, axis=1)
    problems = GATES["int8"].failures(compare(reference, candidate, "t", labels))
    assert problems[0] == "top-1 agreement 98.50% < 99%"
    assert GATES["int8"].failures(compare(reference, candidate, "t")) == problems[:1]  # no labels: no drop


def test_non_finite_logits_never_pass_any_gate() -> None:
    reference = np.eye(2, dtype=np.float32)
    cmp = compare(reference, np.full((2, 2), np.nan, np.float32), "t", np.array([0, 1]))
    assert cmp.max_abs_diff is None and not cmp.finite
    for gate in GATES.values():
        assert "non-finite logits (NaN/Inf)" in gate.failures(cmp)
    assert Gate().failures(compare(reference, reference, "t")) == []


def test_shapes_and_unknown_precisions_are_clear_errors() -> None:
    with pytest.raises(BninceptionError, match="output shapes differ"):
        compare(np.zeros((2, 3)), np.zeros((2, 4)), "t")
    with pytest.raises(BninceptionError, match="nothing to compare"):
        compare(np.zeros((0, 3)), np.zeros((0, 3)), "t")
    with pytest.raises(BninceptionError, match="no gate for precision 'bf16'"):
        gate_for("bf16")


def test_topk_accuracy_and_round_trip() -> None:
    logits = np.array([[0.1, 0.5, 0.4, 0.0], [0.9, 0.05, 0.03, 0.02]], np.float32)
    assert topk_accuracy(logits, np.array([2, 3]), 1) == 0.0
    assert topk_accuracy(logits, np.array([2, 3]), 2) == 0.5
    assert topk_accuracy(logits, np.array([2, 3]), 4) == 1.0
    cmp = compare(REFERENCE, REFERENCE, "t", LABELS)
    assert type(cmp).from_dict(cmp.to_dict()) == cmp
