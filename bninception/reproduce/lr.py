"""The paper's Figures 2 and 3 (learning-rate experiments) on digits with the demo BN-Inception.

Five networks from the same seed (same initial draw and data order where the architecture
allows): Inception without BN at the base rate with Inception's recipe (dropout 0.4, full L2,
slow learning-rate decay), BN-Baseline (the same recipe with BN), and BN-x5, BN-x30 and
BN-x5-Sigmoid with section 4.2.1's recipe (rate x5 / x30, no dropout, L2 / 5, decay 6x faster).
Validation accuracy is recorded after every epoch (the training loop's own evaluation); the
table gives the steps each needs to reach the no-BN network's best validation accuracy.
"""

from __future__ import annotations

import functools
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from bninception.core.errors import BninceptionError

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

    epochs: int = 30
    image_size: int = 32
    width: float = 0.25
    seed: int = 0
    runs: tuple[str, ...] = RUN_NAMES
    train_limit: int = 0  # > 0: train on the first N training digits only (quick checks)
    targets: tuple[float, ...] = (0.9, 0.95)  # fixed validation accuracies the table also times

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise BninceptionError(f"epochs must be >= 1, got {self.epochs}")
        if not 0 < self.width <= 4:
            raise BninceptionError(f"width must be in (0, 4], got {self.width}")
        if self.image_size < 32:
            raise BninceptionError(f"image_size must be >= 32 (Table 5 downsamples 32x), got {self.image_size}")
        if self.train_limit < 0 or 0 < self.train_limit < 64:
            raise BninceptionError(f"train_limit must be 0 (all) or >= 64, got {self.train_limit}")
        unknown = [r for r in self.runs if r not in RUN_NAMES]
        if unknown or not self.runs:
            raise BninceptionError(f"unknown runs {unknown or '(none given)'}; choose from {list(RUN_NAMES)}")
        if not all(0 < t <= 1 for t in self.targets):
            raise BninceptionError(f"targets must be accuracies in (0, 1], got {self.targets}")
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

    @property
    def best(self) -> float:
        return max(self.val_accuracy, default=math.nan)

    def steps_to(self, target: float) -> int | None:
        """The first recorded step with validation accuracy >= target (None: never)."""
        return next((s for s, a in zip(self.steps, self.val_accuracy, strict=True) if a >= target), None)


def target_key(target: float) -> str:
    """The row key of a fixed target accuracy: 0.95 -> 'steps_to_95%'."""
    return f"steps_to_{100 * target:g}%"


@dataclass
class LrResult:
    config: LrConfig
    curves: list[RunCurve]
    signal: dict[str, dict[str, float]] = field(default_factory=dict)  # see signal_at_init

    @property
    def target(self) -> float:
        """The no-BN Inception's best validation accuracy."""
        return next(c.best for c in self.curves if c.name == "Inception")

    def rows(self) -> list[dict[str, Any]]:
        target = self.target
        paper = {r.name: r for r in paper_runs()}
        return [{"run": c.name, "lr": c.lr, "steps_to_inception_best": c.steps_to(target),
                 **{target_key(t): c.steps_to(t) for t in self.config.targets},
                 "best_val_accuracy": c.best, "test_accuracy": c.test_accuracy,
                 "final_train_loss": c.train_loss[-1] if c.train_loss else math.nan,
                 "steps": c.steps[-1] if c.steps else 0, "seconds": round(c.seconds, 1),
                 "diverged": c.diverged, "paper_steps": paper[c.name].paper_steps,
                 "paper_max": paper[c.name].paper_max}
                for c in self.curves]

    def summary(self) -> dict[str, Any]:
        return {"config": asdict(self.config), "inception_best_val_accuracy": self.target,
                "rows": self.rows(), "signal_at_init": self.signal}


@functools.lru_cache(maxsize=2)
def _bundle(image_size: int, seed: int, train_limit: int) -> Any:
    from bninception.model.data import DigitsDataset, load_bundle

    bundle = load_bundle("digits", image_size, seed)
    if train_limit:
        bundle = replace(bundle, train=DigitsDataset(bundle.train.images[:train_limit],  # type: ignore[attr-defined]
                                                     bundle.train.labels[:train_limit],
                                                     augment=True, seed=seed))
    return bundle


def _print_report(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def train_one(cfg: LrConfig, name: str, report: Callable[[str], None] | None = None,
              threads: int = 0) -> RunCurve:
    """Train the network ``name`` (one of RUN_NAMES); divergence is recorded, not raised."""
    import torch

    from bninception.model.train import TrainConfig, train

    if threads:
        torch.set_num_threads(threads)
    spec = next(r for r in paper_runs() if r.name == name)
    bundle = _bundle(cfg.image_size, cfg.seed, cfg.train_limit)
    train_cfg = replace(TrainConfig(image_size=cfg.image_size, width=cfg.width, epochs=cfg.epochs,
                                    seed=cfg.seed), **spec.overrides)
    curve = RunCurve(spec.name, train_cfg.lr)

    def on_epoch(epoch: int, record: dict[str, float]) -> None:
        curve.steps.append((curve.steps[-1] if curve.steps else 0) + int(record["steps"]))
        curve.val_accuracy.append(float(record["val_accuracy"]))
        curve.train_loss.append(float(record["train_loss"]))
        if report is not None:
            report(f"lr {curve.name}: epoch {epoch}/{cfg.epochs} step {curve.steps[-1]} "
                   f"val accuracy {record['val_accuracy']:.3f}")

    started = time.perf_counter()
    try:
        result = train(train_cfg, bundle, progress=False, on_epoch=on_epoch)
        curve.test_accuracy = result.test_accuracy
    except BninceptionError as exc:  # divergence is a result here, not an error
        if "diverged" not in str(exc):
            raise
        curve.diverged = str(exc)
        if report is not None:
            report(f"lr {curve.name}: {exc}")
    curve.seconds = time.perf_counter() - started
    return curve


def signal_at_init(cfg: LrConfig, images: int = 64) -> dict[str, dict[str, float]]:
    """How much of each Inception module's output still depends on the input, at initialisation.

    For the no-BN and the BN network (same seed, training mode): the standard deviation across
    ``images`` validation digits of every output unit, averaged over units, after every module.
    Without BN it shrinks by orders of magnitude through the depth: every image gets nearly the
    same logits, so there is no gradient signal to learn from at the base rate.
    """
    import torch

    from bninception.model.architecture import build_model
    from bninception.model.data import stack_split
    from bninception.model.train import TrainConfig

    bundle = _bundle(cfg.image_size, cfg.seed, cfg.train_limit)
    x = torch.from_numpy(stack_split(bundle.val, images)[0])
    result: dict[str, dict[str, float]] = {}
    for label, batchnorm in (("Inception", False), ("BN", True)):
        torch.manual_seed(cfg.seed)  # as train() does before building the model
        train_cfg = TrainConfig(image_size=cfg.image_size, width=cfg.width, seed=cfg.seed, batchnorm=batchnorm)
        model = build_model(train_cfg.model_config(bundle)).train()
        signal = {}
        with torch.no_grad():
            h = model.pool1_3x3_s2(model.conv1_7x7_s2(x))
            h = model.pool2_3x3_s2(model.conv2_3x3(model.conv2_3x3_reduce(h)))
            signal["stem"] = float(h.std(0).mean())
            for name, module in model.inception.items():
                h = module(h)
                signal[name] = float(h.std(0).mean())
        result[label] = signal
    return result


def run_lr(cfg: LrConfig, report: Callable[[str], None] | None = None, jobs: int = 1,
           threads: int = 0) -> LrResult:
    """Train every requested network, ``jobs`` at a time (separate processes when > 1).

    Worker processes print their progress to stderr when ``report`` is given; ``threads`` > 0
    sets torch's CPU threads in each worker (and, for ``jobs == 1``, in this process).
    """
    names = [r.name for r in paper_runs() if r.name in cfg.runs]
    if jobs < 1:
        raise BninceptionError(f"jobs must be >= 1, got {jobs}")
    signal = signal_at_init(cfg)
    if jobs == 1 or len(names) == 1:
        return LrResult(cfg, [train_one(cfg, name, report, threads) for name in names], signal)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    worker_report = _print_report if report is not None else None
    # spawn: a forked child of a process that already ran torch's OpenMP pool can hang
    with ProcessPoolExecutor(max_workers=min(jobs, len(names)),
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(train_one, cfg, name, worker_report, threads or 1) for name in names]
        return LrResult(cfg, [f.result() for f in futures], signal)
