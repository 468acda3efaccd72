"""The report's figures (matplotlib Agg, imported lazily) from JSON-like data, written atomically as PNG."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bninception.core.errors import BninceptionError
from bninception.core.files import atomic_path

DPI = 110


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (no display needed); a clear error where it is not installed."""
    try:
        import matplotlib
    except ImportError as exc:
        raise BninceptionError(f"figures need matplotlib ({exc}); pip install matplotlib") from None

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``fig`` as PNG to ``path`` atomically and close it."""
    plt = pyplot()
    target = Path(path)
    try:
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    finally:
        plt.close(fig)
    return target


def training_curves_plot(history: Sequence[Mapping[str, float]], path: str | os.PathLike[str]) -> Path:
    """Loss and top-1 accuracy per epoch, training (running, augmented) and validation."""
    if not history:
        raise BninceptionError("no training history to plot")
    plt = pyplot()
    epochs = [int(h["epoch"]) for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("train_loss", "training (mini-batch statistics)"), ("val_loss", "validation")):
        if all(key in h for h in history):
            ax_loss.plot(epochs, [h[key] for h in history], marker=".", label=label)
    ax_loss.set(title="Cross-entropy loss per epoch", xlabel="epoch", ylabel="loss (nats / image)")
    ax_loss.set_yscale("log")
    for key, label in (("train_accuracy", "training (mini-batch statistics)"),
                       ("val_accuracy", "validation")):
        if all(key in h for h in history):
            ax_acc.plot(epochs, [100.0 * h[key] for h in history], marker=".", label=label)
    ax_acc.set(title="Top-1 accuracy per epoch", xlabel="epoch", ylabel="top-1 accuracy (%)")
    from matplotlib.ticker import MaxNLocator

    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle("BN-Inception training")
    return save_figure(fig, path)


def bn_statistics_plot(differences: Mapping[str, Mapping[str, float]], path: str | os.PathLike[str]) -> Path:
    """Per BN layer: relative difference of the EMA running mean / variance from Algorithm 2's."""
    if not differences:
        raise BninceptionError("no per-layer statistics differences to plot")
    plt = pyplot()
    names = list(differences)
    index = list(range(len(names)))
    means = [max(float(differences[n].get("mean_rel_diff", 0.0)), 1e-12) for n in names]
    variances = [max(float(differences[n].get("var_rel_diff", 0.0)), 1e-12) for n in names]
    fig, ax = plt.subplots(figsize=(max(8.0, 0.16 * len(names) + 3), 4.8))
    ax.plot(index, means, marker="o", markersize=3, label="mean  ||mu_pop - mu_ema|| / ||mu_ema||")
    ax.plot(index, variances, marker="s", markersize=3, label="variance  ||var_pop - var_ema|| / ||var_ema||")
    ax.set_yscale("log")
    ax.set(title="EMA running statistics vs population statistics (Algorithm 2), per BN layer",
           xlabel="BN layer (network order)", ylabel="relative difference (L2 norm ratio)")
    step = max(1, len(names) // 40)
    ax.set_xticks(index[::step])
    ax.set_xticklabels([_short(n) for n in names[::step]], rotation=90, fontsize=7)
    ax.grid(True, alpha=0.3, which="both")
    ax.legend()
    return save_figure(fig, path)


def _short(name: str) -> str:
    return name.replace("inception.", "").replace(".branches.", ".").replace(".bn", "")


def throughput_plot(bench: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Images per second against batch size, one line per backend (log-log)."""
    results = [r for r in bench.get("results", []) if r.get("images_per_second")]
    if not results:
        raise BninceptionError("no benchmark results to plot")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    names = list(dict.fromkeys(r["name"] for r in results))
    for name in names:
        rows = sorted((r for r in results if r["name"] == name), key=lambda r: r["batch_size"])
        style = "--" if name.endswith("opt off") else "-"
        ax.plot([r["batch_size"] for r in rows], [r["images_per_second"] for r in rows], style, marker="o",
                label=name)
    sizes = sorted({r["batch_size"] for r in results})
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(sizes)
    ax.set_xticklabels([str(s) for s in sizes])
    machine = bench.get("machine", {})
    where = machine.get("gpu") or f"{machine.get('cpu', 'CPU')}, {machine.get('cores_available', '?')} cores"
    ax.set(title=f"Throughput vs batch size\n{where}", xlabel="batch size (images per call)",
           ylabel="throughput (images / s)")
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def accuracy_plot(validate: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Top-1 accuracy and agreement with the reference, per artifact."""
    rows = [{"name": r["name"], "status": r["status"], "top1": r["comparison"]["accuracy"],
             "agreement": r["comparison"]["top1_agreement"]}
            for r in validate.get("rows", []) if (r.get("comparison") or {}).get("accuracy") is not None]
    if not rows:
        raise BninceptionError("no validation rows to plot")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(rows) + 2), 4.5))
    x = list(range(len(rows)))
    width = 0.38
    accuracy = ax.bar([i - width / 2 for i in x], [100 * r["top1"] for r in rows], width,
                      label="top-1 accuracy")
    agreement = ax.bar([i + width / 2 for i in x],
                       [100 * r["agreement"] for r in rows],
                       width, label="top-1 agreement with model.pt")
    for bars in (accuracy, agreement):
        ax.bar_label(bars, fmt="%.2f", fontsize=6.5, padding=1)
    low = min(min(100 * r["top1"] for r in rows), min(100 * r["agreement"] for r in rows))
    ax.set_ylim(max(0.0, low - 5), 102.5)
    ax.set_xticks(x)
    ax.set_xticklabels([f"{r['name']}\n[{r['status']}]" for r in rows], rotation=20, ha="right", fontsize=8)
    ax.set_title("Accuracy and parity per artifact", pad=28)
    ax.set(ylabel="percent of test images (%)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    return save_figure(fig, path)
