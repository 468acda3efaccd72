"""Figures for the reproductions (matplotlib, Agg backend, imported lazily), written atomically."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from bninception.evaluate.plots import pyplot, save_figure

if TYPE_CHECKING:
    from experiments.paper.fig1 import Fig1Result
    from experiments.paper.lr import LrResult

COLORS = {"no_bn": "tab:red", "bn": "tab:blue"}


def plot_fig1a(result: Fig1Result, target: str | Path) -> None:
    """Test accuracy against training steps, with and without BN (the paper's Figure 1a)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for key, curve, label in (("no_bn", result.baseline, "without BN"),
                              ("bn", result.batchnorm, "with BN")):
        ax.plot(curve.steps, curve.test_accuracy, color=COLORS[key], linewidth=1.6,
                label=f"{label} (final {100 * curve.final_accuracy:.1f}%)")
    ax.set_xlabel(f"training steps (mini-batches of {result.config.batch_size})")
    ax.set_ylabel("test accuracy (fraction correct)")
    ax.set_title("Figure 1(a) on 8x8 digits: 3x100 sigmoid MLP, test accuracy")
    # like the paper, zoom on the top: the early steps (from chance) run below the axis
    low = min(result.baseline.final_accuracy, result.batchnorm.final_accuracy) - 0.05
    ax.set_ylim(max(0.0, math.floor(low * 20) / 20), 1.0)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    save_figure(fig, target)


def plot_fig1bc(result: Fig1Result, target: str | Path) -> None:
    """15th/50th/85th percentiles of one last-hidden-layer sigmoid input, without and with BN."""
    import numpy as np

    from experiments.paper.fig1 import PERCENTILES

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    for ax, key, curve, title in ((axes[0], "no_bn", result.baseline, "(b) without BN"),
                                  (axes[1], "bn", result.batchnorm, "(c) with BN")):
        values = np.asarray(curve.percentiles)
        for column, (pct, style) in enumerate(zip(PERCENTILES, (":", "-", "--"), strict=True)):
            ax.plot(curve.steps, values[:, column], style, color=COLORS[key], label=f"{pct}th percentile",
                    linewidth=1.4 if pct == 50 else 1.0)
        ax.set_title(f"{title}: drift {curve.percentile_drift():.2f}")
        ax.set_xlabel(f"training steps (mini-batches of {result.config.batch_size})")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    axes[0].set_ylabel(f"sigmoid input of last-layer unit {result.config.neuron} (pre-activation)")
    fig.suptitle(f"Figure 1(b, c) on 8x8 digits: distribution over {result.config.probe} fixed test "
                 "inputs (drift: mean max-min of the percentiles)")
    save_figure(fig, target)


def plot_lr(result: LrResult, target: str | Path) -> None:
    """The paper's Figure 2: validation accuracy against steps, whole range and a zoom on the top."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    target_acc = result.target
    speedups = {row["run"]: row["fewer_steps_to_inception_best"] for row in result.rows()}
    zoom = max(0.0, math.floor((target_acc - 0.08) * 20) / 20)
    for ax, low in zip(axes, (0.0, zoom), strict=True):
        for curve in result.curves:
            label = f"{curve.name} (lr {curve.lr:g})" + (" diverged" if curve.diverged else "")
            if curve.name != "Inception":
                fewer = speedups[curve.name]
                label += ": never reaches the grey line" if fewer is None else f": {fewer:.1f}x fewer steps"
            line, = ax.plot(curve.steps, curve.val_accuracy, linewidth=1.3, label=label)
            reached = curve.steps_to(target_acc)
            if reached is not None:
                ax.plot([reached], [curve.val_accuracy[curve.steps.index(reached)]], "o",
                        markerfacecolor="none", markersize=9, color=line.get_color())
        ax.axhline(target_acc, color="grey", linestyle=":", linewidth=1.2,
                   label=f"Inception (no BN) best: {100 * target_acc:.1f}%")
        ax.set_xlabel("training steps (mini-batches of 64)")
        ax.set_ylim(low, 1.0)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("validation accuracy (fraction correct)")
    axes[1].set_title(f"zoom on {100 * zoom:.0f}-100%")
    axes[1].legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small")
    fig.suptitle(f"Figure 2 on digits: demo BN-Inception (width {result.config.width:g}, "
                 f"{result.config.image_size}x{result.config.image_size}, {result.config.init} init); "
                 "circles: first evaluation at or above Inception's best (grey)")
    save_figure(fig, target)
