"""The paper's Figure 1 (MLP with and without BN) on scikit-learn's 8x8 digits (docs/reproduce.md).

3 x 100 sigmoid units, batches of 60, plain SGD; BN before each sigmoid. Both networks start from
the same weights and batches; recorded: test accuracy and the 15/50/85th percentiles of one
last-layer sigmoid's input over fixed probe inputs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bninception.core.errors import BninceptionError
from experiments.paper.fig1_config import Fig1Config

PERCENTILES = (15, 50, 85)


@dataclass
class Curve:
    """One network's recorded history."""

    steps: list[int] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)
    percentiles: list[tuple[float, float, float]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def final_accuracy(self) -> float:
        return self.test_accuracy[-1]

    def percentile_drift(self) -> float:
        """Mean over the 15/50/85th percentiles of (max - min) over training: how far they move."""
        values = np.asarray(self.percentiles)
        return float(np.mean(values.max(axis=0) - values.min(axis=0)))


@dataclass
class Fig1Result:
    config: Fig1Config
    baseline: Curve
    batchnorm: Curve

    def summary(self) -> dict[str, object]:
        return {"config": asdict(self.config),
                "final_test_accuracy": {"no_bn": self.baseline.final_accuracy,
                                        "bn": self.batchnorm.final_accuracy},
                "best_test_accuracy": {"no_bn": max(self.baseline.test_accuracy),
                                       "bn": max(self.batchnorm.test_accuracy)},
                "percentile_drift": {"no_bn": self.baseline.percentile_drift(),
                                     "bn": self.batchnorm.percentile_drift()},
                "seconds": {"no_bn": self.baseline.seconds, "bn": self.batchnorm.seconds}}


class MLP(nn.Module):
    """Linear -> [BN] -> sigmoid, ``layers`` times, then a linear softmax layer (logits)."""

    def __init__(self, inputs: int, hidden: int, layers: int, classes: int, batchnorm: bool) -> None:
        super().__init__()
        self.linears = nn.ModuleList()
        self.norms = nn.ModuleList()
        width = inputs
        for _ in range(layers):
            self.linears.append(nn.Linear(width, hidden, bias=not batchnorm))
            # momentum=None: running stats are a plain average, used for Algorithm 2 below
            self.norms.append(nn.BatchNorm1d(hidden, momentum=None) if batchnorm else nn.Identity())
            width = hidden
        self.out = nn.Linear(width, classes)

    def forward_with_last_input(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, the last hidden layer's sigmoid input)."""
        pre = x
        for linear, norm in zip(self.linears, self.norms, strict=True):
            pre = norm(linear(x))
            x = torch.sigmoid(pre)
        return self.out(x), pre

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_last_input(x)[0]


def load_digits_arrays(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train x, train y, test x, test y): digits flattened to [0, 1]; train = the project's train + val."""
    from sklearn.datasets import load_digits

    from bninception.model.data import stratified_split

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    train_idx, val_idx, test_idx = stratified_split(y, (0.2, 0.2), seed)
    train_idx = np.sort(np.concatenate([train_idx, val_idx]))
    return (torch.from_numpy(x[train_idx]), torch.from_numpy(y[train_idx]),
            torch.from_numpy(x[test_idx]), torch.from_numpy(y[test_idx]))


def initial_weights(cfg: Fig1Config, inputs: int, classes: int) -> dict[str, torch.Tensor]:
    """Small Gaussian weights N(0, init_std^2), zero biases: shared by both networks."""
    gen = torch.Generator().manual_seed(cfg.seed)
    shapes = [(cfg.hidden, inputs)] + [(cfg.hidden, cfg.hidden)] * (cfg.layers - 1)
    weights = {f"linears.{i}.weight": torch.randn(s, generator=gen) * cfg.init_std
               for i, s in enumerate(shapes)}
    weights["out.weight"] = torch.randn(classes, cfg.hidden, generator=gen) * cfg.init_std
    weights["out.bias"] = torch.zeros(classes)
    return weights


def build_mlp(cfg: Fig1Config, inputs: int, classes: int, batchnorm: bool) -> MLP:
    model = MLP(inputs, cfg.hidden, cfg.layers, classes, batchnorm)
    with torch.no_grad():
        for name, param in model.named_parameters():
            init = initial_weights(cfg, inputs, classes)
            if name in init:
                param.copy_(init[name])
            elif name.endswith(".bias") and name.startswith("linears"):
                param.zero_()
    return model


def batch_order(n: int, cfg: Fig1Config) -> np.ndarray:
    """Indices of every step's mini-batch: a fresh shuffle each epoch, drawn from the seed only."""
    per_epoch = n // cfg.batch_size
    epochs = -(-cfg.steps // per_epoch)
    rng = np.random.default_rng(cfg.seed)
    batches = [rng.permutation(n)[:per_epoch * cfg.batch_size].reshape(per_epoch, cfg.batch_size)
               for _ in range(epochs)]
    return np.concatenate(batches)[:cfg.steps]


@torch.no_grad()
def set_population_statistics(model: MLP, x: torch.Tensor, batch_size: int) -> None:
    """Algorithm 2: BN running stats := mean of batch means, m/(m-1) * mean of batch variances."""
    norms = [n for n in model.norms if isinstance(n, nn.BatchNorm1d)]
    if not norms:
        return
    for norm in norms:
        norm.reset_running_stats()  # with momentum=None the update is a cumulative average
    model.train()
    for start in range(0, len(x) - batch_size + 1, batch_size):
        model(x[start:start + batch_size])
    model.eval()


@torch.no_grad()
def measure(model: MLP, train_x: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
            probe: torch.Tensor, cfg: Fig1Config) -> tuple[float, tuple[float, float, float]]:
    """(test accuracy, sigmoid-input percentiles on the probe inputs), network in inference form."""
    set_population_statistics(model, train_x, cfg.batch_size)
    model.eval()
    accuracy = float((model(test_x).argmax(1) == test_y).float().mean())
    _, pre = model.forward_with_last_input(probe)
    values = np.percentile(pre[:, cfg.neuron].numpy(), PERCENTILES)
    model.train()
    return accuracy, (float(values[0]), float(values[1]), float(values[2]))


def train_curve(cfg: Fig1Config, batchnorm: bool, data: tuple[torch.Tensor, ...],
                order: np.ndarray, report: Callable[[str], None] | None = None) -> Curve:
    train_x, train_y, test_x, test_y = data
    model = build_mlp(cfg, train_x.shape[1], int(train_y.max()) + 1, batchnorm)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    probe = test_x[:cfg.probe]
    curve = Curve()
    started = time.perf_counter()

    def record(step: int) -> None:
        accuracy, pct = measure(model, train_x, test_x, test_y, probe, cfg)
        curve.steps.append(step)
        curve.test_accuracy.append(accuracy)
        curve.percentiles.append(pct)

    record(0)
    model.train()
    for step, batch in enumerate(order, start=1):
        index = torch.from_numpy(batch)
        loss = F.cross_entropy(model(train_x[index]), train_y[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % cfg.eval_every == 0 or step == cfg.steps:
            if not torch.isfinite(loss):
                raise BninceptionError(f"fig1 training diverged at step {step}; lower the learning rate")
            record(step)
            if report is not None:
                report(f"fig1 {'BN' if batchnorm else 'no BN'}: step {step}/{cfg.steps} "
                       f"test accuracy {curve.test_accuracy[-1]:.3f}")
    curve.seconds = time.perf_counter() - started
    return curve


def run_fig1(cfg: Fig1Config, report: Callable[[str], None] | None = None) -> Fig1Result:
    """Train both networks from the same initial weights on the same mini-batch sequence."""
    data = load_digits_arrays(cfg.seed)
    order = batch_order(len(data[0]), cfg)
    baseline = train_curve(cfg, False, data, order, report)
    batchnorm = train_curve(cfg, True, data, order, report)
    return Fig1Result(cfg, baseline, batchnorm)
