"""The paper's Figures 2 and 3 (learning-rate experiments) on digits with the demo BN-Inception.

Five networks from the same seed (same initial draw and data order where the architecture
allows): Inception without BN at the base rate with Inception's recipe (dropout 0.4, full L2,
slow learning-rate decay), BN-Baseline (the same recipe with BN), and BN-x5, BN-x30 and
BN-x5-Sigmoid with section 4.2.1's recipe (rate x5 / x30, no dropout, L2 / 5, decay 6x faster).
Validation accuracy is recorded after every epoch (the training loop's own evaluation); the
table gives the steps each needs to reach the no-BN network's best validation accuracy.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from bninception.errors import BninceptionError

FAST_DECAY = 0.9  # per epoch: the BN recipe ("accelerate the learning rate decay 6x")
SLOW_DECAY = FAST_DECAY ** (1 / 6)  # Inception's decay, 6x slower
INCEPTION_DROPOUT = 0.4  # GoogLeNet's dropout before the classifier; BN lets it go


@dataclass(frozen=True)
class LrRun:
    """One of the paper's networks: a name, TrainConfig overrides, the paper's numbers."""

    name: str
    overrides: dict[str, Any]
    paper_steps: str  # steps to Inception's 72.2% top-1 in the paper
    paper_max: str  # best top-1 in the paper


def paper_runs() -> tuple[LrRun, ...]:
    from bninception.model.train import INCEPTION_WEIGHT_DECAY

    inception = {"weight_decay": INCEPTION_WEIGHT_DECAY, "lr_decay": SLOW_DECAY,
                 "dropout": INCEPTION_DROPOUT, "lr_scale": 1.0}
    return (
        LrRun("Inception", {**inception, "batchnorm": False}, "31.0M", "72.2%"),
        LrRun("BN-Baseline", inception, "13.3M", "72.7%"),
        LrRun("BN-x5", {"lr_scale": 5.0}, "2.1M", "73.0%"),
        LrRun("BN-x30", {"lr_scale": 30.0}, "2.7M", "74.8%"),
        LrRun("BN-x5-Sigmoid", {"lr_scale": 5.0, "activation": "sigmoid"}, "never", "69.8%"),
    )


RUN_NAMES = ("Inception", "BN-Baseline", "BN-x5", "BN-x30", "BN-x5-Sigmoid")


@dataclass(frozen=True)
class LrConfig:
    """The experiment: which runs, how long, on what input size."""

    epochs: int = 20
    image_size: int = 32
    width: float = 0.25
    seed: int = 0
    runs: tuple[str, ...] = RUN_NAMES

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise BninceptionError(f"epochs must be >= 1, got {self.epochs}")
        unknown = [r for r in self.runs if r not in RUN_NAMES]
        if unknown or not self.runs:
            raise BninceptionError(f"unknown runs {unknown or '(none given)'}; choose from {list(RUN_NAMES)}")
        if "Inception" not in self.runs:
            raise BninceptionError("the runs must include 'Inception': the table's target is its best accuracy")


@dataclass
class RunCurve:
    """One network's validation accuracy after every epoch."""

    name: str
    lr: float
    steps: list[int] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    test_accuracy: float = math.nan
    seconds: float = 0.0
    diverged: str = ""
    paper_steps: str = ""
    paper_max: str = ""

    @property
    def best(self) -> float:
        return max(self.val_accuracy, default=math.nan)

    def steps_to(self, target: float) -> int | None:
        """The first recorded step with validation accuracy >= target (None: never)."""
        return next((s for s, a in zip(self.steps, self.val_accuracy, strict=True) if a >= target), None)


@dataclass
class LrResult:
    config: LrConfig
    curves: list[RunCurve]

    @property
    def target(self) -> float:
        """The no-BN Inception's best validation accuracy."""
        return next(c.best for c in self.curves if c.name == "Inception")

    def rows(self) -> list[dict[str, Any]]:
        target = self.target
        return [{"run": c.name, "lr": c.lr, "steps_to_inception_best": c.steps_to(target),
                 "best_val_accuracy": c.best, "test_accuracy": c.test_accuracy,
                 "steps": c.steps[-1] if c.steps else 0, "seconds": round(c.seconds, 1),
                 "diverged": c.diverged, "paper_steps": c.paper_steps, "paper_max": c.paper_max}
                for c in self.curves]

    def summary(self) -> dict[str, Any]:
        return {"config": asdict(self.config), "inception_best_val_accuracy": self.target,
                "rows": self.rows()}


def run_lr(cfg: LrConfig, report: Callable[[str], None] | None = None) -> LrResult:
    """Train every requested network and record its validation accuracy per epoch."""
    from bninception.model.data import load_bundle
    from bninception.model.train import TrainConfig, train

    bundle = load_bundle("digits", cfg.image_size, cfg.seed)
    curves = []
    for spec in paper_runs():
        if spec.name not in cfg.runs:
            continue
        train_cfg = replace(TrainConfig(image_size=cfg.image_size, width=cfg.width, epochs=cfg.epochs,
                                        seed=cfg.seed), **spec.overrides)
        curve = RunCurve(spec.name, train_cfg.lr, paper_steps=spec.paper_steps, paper_max=spec.paper_max)
        step = 0

        def on_epoch(epoch: int, record: dict[str, float], curve: RunCurve = curve) -> None:
            nonlocal step
            step += int(record["steps"])
            curve.steps.append(step)
            curve.val_accuracy.append(float(record["val_accuracy"]))
            curve.train_loss.append(float(record["train_loss"]))
            if report is not None:
                report(f"lr {curve.name}: epoch {epoch}/{cfg.epochs} step {step} "
                       f"val accuracy {record['val_accuracy']:.3f}")

        started = time.perf_counter()
        try:
            result = train(train_cfg, bundle, progress=False, on_epoch=on_epoch)
            curve.test_accuracy = result.test_accuracy
        except BninceptionError as exc:  # divergence is a result here, not an error
            curve.diverged = str(exc)
            if report is not None:
                report(f"lr {curve.name}: {exc}")
        curve.seconds = time.perf_counter() - started
        curves.append(curve)
    return LrResult(cfg, curves)
