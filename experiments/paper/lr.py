"""The paper's Figures 2 and 3 (learning-rate experiments) on digits with the demo BN-Inception.

Six networks from one seed and GoogLeNet's initialisation (docs/reproduce.md); the table gives the
steps each needs to reach the no-BN Inception's best validation accuracy.
"""

from __future__ import annotations

import functools
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from bninception.core.errors import BninceptionError
from bninception.core.settings import check_settings, setting
from bninception.model.config import INIT_SCHEMES

if TYPE_CHECKING:
    from bninception.model.data import DatasetBundle

FAST_DECAY = 0.9  # per epoch: the BN recipe ("accelerate the learning rate decay 6x")
SLOW_DECAY = FAST_DECAY ** (1 / 6)  # Inception's decay, 6x slower
INCEPTION_DROPOUT = 0.4  # GoogLeNet's dropout before the classifier; BN lets it go
PAPER_INCEPTION_STEPS = 31.0  # millions of steps Inception needed to reach its 72.2%


@dataclass(frozen=True)
class LrRun:
    """One of the paper's networks: a name, TrainConfig overrides, the paper's numbers."""

    name: str
    overrides: dict[str, Any]
    paper_steps: float | None  # millions of steps to Inception's 72.2% top-1 (None: never)
    paper_max: str  # best top-1 in the paper

    @property
    def batchnorm(self) -> bool:
        return bool(self.overrides.get("batchnorm", True))


def paper_runs() -> tuple[LrRun, ...]:
    from bninception.model.config import INCEPTION_WEIGHT_DECAY

    inception = {"weight_decay": INCEPTION_WEIGHT_DECAY, "lr_decay": SLOW_DECAY,
                 "dropout": INCEPTION_DROPOUT, "lr_scale": 1.0}
    return (
        LrRun("Inception", {**inception, "batchnorm": False}, PAPER_INCEPTION_STEPS, "72.2%"),
        LrRun("BN-Baseline", inception, 13.3, "72.7%"),
        LrRun("BN-x5", {"lr_scale": 5.0}, 2.1, "73.0%"),
        LrRun("BN-x30", {"lr_scale": 30.0}, 2.7, "74.8%"),
        LrRun("BN-x5-Sigmoid", {"lr_scale": 5.0, "activation": "sigmoid"}, None, "69.8%"),
        LrRun("Inception-Sigmoid", {**inception, "batchnorm": False, "activation": "sigmoid"}, None,
              "0.1% (chance)"),
    )


RUN_NAMES = ("Inception", "BN-Baseline", "BN-x5", "BN-x30", "BN-x5-Sigmoid", "Inception-Sigmoid")


@dataclass(frozen=True)
class LrConfig:
    """The experiment: which runs, how long, on what input size, from which initialisation."""

    epochs: int = setting(60, "epochs per network with BN", low=1)
    no_bn_epochs: int = setting(200, "epochs per network without BN (Inception stops improving by ~190)", low=1)
    image_size: int = 32
    width: float = setting(0.25, "BN-Inception width multiplier", low=0, above=True, high=4)
    seed: int = 0
    init: str = setting("xavier", "initialisation of every network: GoogLeNet's xavier fillers or PyTorch's "
                        "default", choices=INIT_SCHEMES)
    runs: tuple[str, ...] = RUN_NAMES
    targets: tuple[float, ...] = (0.9, 0.95)  # fixed validation accuracies the table also times

    def __post_init__(self) -> None:
        check_settings(self, "lr settings")
        if self.image_size < 32:
            raise BninceptionError(f"image_size must be >= 32 (Table 5 downsamples 32x), got {self.image_size}")
        unknown = [r for r in self.runs if r not in RUN_NAMES]
        if unknown or not self.runs:
            raise BninceptionError(f"unknown runs {unknown or '(none given)'}; choose from {list(RUN_NAMES)}")
        if not all(0 < t <= 1 for t in self.targets):
            raise BninceptionError(f"targets must be accuracies in (0, 1], got {self.targets}")
        if "Inception" not in self.runs:
            raise BninceptionError("the runs must include 'Inception': the table's target is its best accuracy")

    def epochs_of(self, run: LrRun) -> int:
        return self.epochs if run.batchnorm else self.no_bn_epochs


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


def fewer_steps(reference: float | None, steps: float | None) -> float | None:
    """How many times fewer steps than ``reference`` (None where either never got there)."""
    return None if reference is None or steps is None else reference / steps


@dataclass
class LrResult:
    config: LrConfig
    curves: list[RunCurve]
    signal: dict[str, dict[str, float]] = field(default_factory=dict)  # see signal_at_init

    @property
    def inception(self) -> RunCurve:
        return next(c for c in self.curves if c.name == "Inception")

    @property
    def target(self) -> float:
        """The no-BN Inception's best validation accuracy."""
        return self.inception.best

    def rows(self) -> list[dict[str, Any]]:
        """One row per network: steps to each target and how many times fewer than Inception's."""
        targets = {"inception_best": self.target} | {target_key(t).removeprefix("steps_to_"): t
                                                     for t in self.config.targets}
        reference = {key: self.inception.steps_to(t) for key, t in targets.items()}
        paper = {r.name: r for r in paper_runs()}
        rows = []
        for c in self.curves:
            run = paper[c.name]
            steps = {key: c.steps_to(t) for key, t in targets.items()}
            rows.append({
                "run": c.name, "lr": c.lr, "epochs": self.config.epochs_of(run),
                **{f"steps_to_{key}": n for key, n in steps.items()},
                **{f"fewer_steps_to_{key}": fewer_steps(reference[key], n) for key, n in steps.items()},
                "best_val_accuracy": c.best, "test_accuracy": c.test_accuracy,
                "final_train_loss": c.train_loss[-1] if c.train_loss else math.nan,
                "steps": c.steps[-1] if c.steps else 0, "seconds": round(c.seconds, 1),
                "diverged": c.diverged, "paper_steps": run.paper_steps,
                "paper_fewer_steps": fewer_steps(PAPER_INCEPTION_STEPS, run.paper_steps),
                "paper_max": run.paper_max})
        return rows

    def summary(self) -> dict[str, Any]:
        return {"config": asdict(self.config), "inception_best_val_accuracy": self.target,
                "rows": self.rows(), "signal_at_init": self.signal}


@functools.lru_cache(maxsize=2)
def _bundle(image_size: int, seed: int) -> DatasetBundle:
    from bninception.model.data import load_bundle

    return load_bundle("digits", image_size, seed)


def _print_report(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def train_one(cfg: LrConfig, name: str, report: Callable[[str], None] | None = None,
              threads: int = 0) -> RunCurve:
    """Train the network ``name`` (one of RUN_NAMES); divergence is recorded, not raised."""
    import torch

    from bninception.model.config import TrainConfig
    from bninception.model.train import train

    if threads:
        torch.set_num_threads(threads)
    spec = next(r for r in paper_runs() if r.name == name)
    bundle = _bundle(cfg.image_size, cfg.seed)
    train_cfg = replace(TrainConfig(image_size=cfg.image_size, width=cfg.width, epochs=cfg.epochs_of(spec),
                                    seed=cfg.seed, init=cfg.init), **spec.overrides)
    curve = RunCurve(spec.name, train_cfg.lr)

    def on_epoch(epoch: int, record: dict[str, float]) -> None:
        curve.steps.append((curve.steps[-1] if curve.steps else 0) + int(record["steps"]))
        curve.val_accuracy.append(float(record["val_accuracy"]))
        curve.train_loss.append(float(record["train_loss"]))
        if report is not None:
            report(f"lr {curve.name}: epoch {epoch}/{train_cfg.epochs} step {curve.steps[-1]} "
                   f"val accuracy {record['val_accuracy']:.3f}")

    started = time.perf_counter()
    try:
        curve.test_accuracy = train(train_cfg, bundle, progress=False, on_epoch=on_epoch).test_accuracy
    except BninceptionError as exc:  # divergence is a result here, not an error
        if "diverged" not in str(exc):
            raise
        curve.diverged = str(exc)
        if report is not None:
            report(f"lr {curve.name}: {exc}")
    curve.seconds = time.perf_counter() - started
    return curve


def signal_at_init(cfg: LrConfig, images: int = 64) -> dict[str, dict[str, float]]:
    """The std across ``images`` digits of each module's output at initialisation, for no-BN and BN from
    ``cfg.init``, and no-BN from PyTorch's default (where the signal all but vanishes by 5b).
    """
    import torch

    from bninception.model.config import TrainConfig
    from bninception.model.data import stack_split
    from bninception.model.train import build_network

    bundle = _bundle(cfg.image_size, cfg.seed)
    x = torch.from_numpy(stack_split(bundle.val, images)[0])
    networks = [("Inception", False, cfg.init), ("BN", True, cfg.init)]
    if cfg.init != "pytorch":
        networks.append(("Inception, PyTorch init", False, "pytorch"))
    result: dict[str, dict[str, float]] = {}
    for label, batchnorm, init in networks:
        train_cfg = TrainConfig(image_size=cfg.image_size, width=cfg.width, seed=cfg.seed, batchnorm=batchnorm,
                                init=init)
        model = build_network(train_cfg, bundle).train()
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
    """Train every requested network, ``jobs`` at a time (processes when > 1), longest first; RUN_NAMES order."""
    runs = [r for r in paper_runs() if r.name in cfg.runs]
    if jobs < 1:
        raise BninceptionError(f"jobs must be >= 1, got {jobs}")
    signal = signal_at_init(cfg)
    if jobs == 1 or len(runs) == 1:
        return LrResult(cfg, [train_one(cfg, r.name, report, threads) for r in runs], signal)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    worker_report = _print_report if report is not None else None
    longest_first = sorted(runs, key=cfg.epochs_of, reverse=True)
    # spawn: a forked child of a process that already ran torch's OpenMP pool can hang
    with ProcessPoolExecutor(max_workers=min(jobs, len(runs)),
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {r.name: pool.submit(train_one, cfg, r.name, worker_report, threads or 1)
                   for r in longest_first}
        return LrResult(cfg, [futures[r.name].result() for r in runs], signal)
