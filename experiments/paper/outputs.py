"""The reproductions' files: CSV numbers, the markdown table and the figures, all written atomically."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING

from bninception.core.files import atomic_write_text
from bninception.evaluate.tables import pct, render

if TYPE_CHECKING:
    from experiments.paper.fig1 import Fig1Result
    from experiments.paper.lr import LrResult


def _csv(header: list[str], rows: list[list[object]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def fig1_csv(result: Fig1Result) -> str:
    """One row per recorded step: both networks' test accuracy and sigmoid-input percentiles."""
    header = ["step", "no_bn_test_accuracy", "bn_test_accuracy",
              "no_bn_p15", "no_bn_p50", "no_bn_p85", "bn_p15", "bn_p50", "bn_p85"]
    base, bn = result.baseline, result.batchnorm
    rows = [[step, f"{a0:.6f}", f"{a1:.6f}", *(f"{v:.6f}" for v in p0), *(f"{v:.6f}" for v in p1)]
            for step, a0, a1, p0, p1 in zip(base.steps, base.test_accuracy, bn.test_accuracy,
                                            base.percentiles, bn.percentiles, strict=True)]
    return _csv(header, rows)


def write_fig1(result: Fig1Result, out: str | Path) -> list[Path]:
    """fig1.csv, fig1a.png, fig1bc.png in ``out``."""
    from experiments.paper.plots import plot_fig1a, plot_fig1bc

    out = Path(out)
    paths = [out / "fig1.csv", out / "fig1a.png", out / "fig1bc.png"]
    atomic_write_text(paths[0], fig1_csv(result))
    plot_fig1a(result, paths[1])
    plot_fig1bc(result, paths[2])
    return paths


def lr_csv(result: LrResult) -> str:
    """One row per network and epoch: steps so far, validation accuracy, training loss."""
    rows = [[c.name, c.lr, epoch, step, f"{acc:.6f}", f"{loss:.6f}"]
            for c in result.curves
            for epoch, (step, acc, loss) in enumerate(zip(c.steps, c.val_accuracy, c.train_loss,
                                                          strict=True), start=1)]
    return _csv(["run", "lr", "epoch", "step", "val_accuracy", "train_loss"], rows)


def _pct(value: float) -> str:
    return pct(value, 1, "n/a")


def _steps(value: int | None, fewer: float | None = None, diverged: str = "") -> str:
    """'204 (6.3x)': steps, and how many times fewer than Inception needed; 'never' if not reached."""
    text = "never" if value is None else str(value) + ("" if fewer is None else f" ({fewer:.1f}x)")
    return text + (" (diverged)" if diverged else "")


def _paper_steps(millions: float | None, fewer: float | None) -> str:
    return "never" if millions is None else f"{millions:.1f}M ({fewer:.1f}x)"


def lr_markdown(result: LrResult) -> str:
    """The paper's Figure 3 as a table, with the paper's ImageNet numbers beside ours."""
    from experiments.paper.lr import target_key

    cfg = result.config
    keys = ["inception_best"] + [target_key(t).removeprefix("steps_to_") for t in cfg.targets]
    best = _pct(result.target)
    lines = [f"Digits, demo BN-Inception (width {cfg.width:g}, {cfg.image_size}x{cfg.image_size}), "
             f"{cfg.init} initialisation, seed {cfg.seed}, mini-batches of 64, validation accuracy after "
             f"every epoch; {cfg.epochs} epochs with BN, {cfg.no_bn_epochs} without. Inception without BN "
             f"reached {best} at best, first after {_steps(result.inception.steps_to(result.target))} steps. "
             "Steps to a target (times fewer than Inception needed).", ""]
    head = ["network", "lr", f"steps to Inception's best ({best})", *(f"steps to {k}" for k in keys[1:]),
            "best val accuracy", "final test accuracy", "final train loss", "paper: steps to 72.2%", "paper: max"]
    lines += render(head, [[row["run"], f"{row['lr']:g}",
                            *(_steps(row[f"steps_to_{k}"], row[f"fewer_steps_to_{k}"], row["diverged"]) for k in keys),
                            _pct(row["best_val_accuracy"]), _pct(row["test_accuracy"]),
                            "n/a" if math.isnan(row["final_train_loss"]) else f"{row['final_train_loss']:.3f}",
                            _paper_steps(row["paper_steps"], row["paper_fewer_steps"]), row["paper_max"]]
                           for row in result.rows()], markdown=True)
    if result.signal:
        names = list(next(iter(result.signal.values())))
        lines += ["", "Input-dependent signal at initialisation (std across 64 validation digits of each "
                  "output unit, averaged over units, training mode):", "",
                  *render(["network", *names], [[label, *(f"{values[n]:.2g}" for n in names)]
                                                for label, values in result.signal.items()], markdown=True)]
    return "\n".join(lines) + "\n"


def write_lr(result: LrResult, out: str | Path) -> list[Path]:
    """lr.csv, lr.md, lr.png in ``out``."""
    from experiments.paper.plots import plot_lr

    out = Path(out)
    paths = [out / "lr.csv", out / "lr.md", out / "lr.png"]
    atomic_write_text(paths[0], lr_csv(result))
    atomic_write_text(paths[1], lr_markdown(result))
    plot_lr(result, paths[2])
    return paths
