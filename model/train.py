"""Training with the paper's BN recipe (section 4.2.1), deterministic per (seed, epoch) so a resume
ends with the same weights.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bninception.core.errors import BninceptionError
from bninception.model.architecture import BNInception, build_model, count_parameters, init_weights
from bninception.model.checkpoint import CHECKPOINT_FORMAT, load, model_from_state, save
from bninception.model.config import TrainConfig
from bninception.model.data import AugmentedDataset, DatasetBundle
from bninception.model.distributed import DistContext, all_reduce_sum, init_distributed
from bninception.model.labels import dataset_labels

log = logging.getLogger(__name__)


def epoch_order(n: int, seed: int, epoch: int, ctx: DistContext) -> np.ndarray:
    """The epoch's shuffle (reshuffled every epoch), this rank's share of it."""
    order = np.random.default_rng([seed, epoch]).permutation(n)
    usable = (n // ctx.world_size) * ctx.world_size
    return order[:usable][ctx.rank::ctx.world_size]


def iterate_batches(dataset: AugmentedDataset, indices: np.ndarray, batch_size: int
                    ) -> Any:
    for start in range(0, len(indices), batch_size):
        items = [dataset[int(i)] for i in indices[start:start + batch_size]]
        yield torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])


@torch.no_grad()
def evaluate(model: nn.Module, dataset: AugmentedDataset, batch_size: int = 256,
             device: torch.device | None = None) -> tuple[float, float]:
    """(top-1 accuracy, mean cross-entropy) of ``model`` in its current mode on ``dataset``."""
    device = device or torch.device("cpu")
    correct, loss_sum, count = 0, 0.0, 0
    for x, y in iterate_batches(dataset, np.arange(len(dataset)), batch_size):
        logits = model(x.to(device)).float()
        y = y.to(device)
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
        count += len(y)
    return correct / max(count, 1), loss_sum / max(count, 1)


class Progress:
    """A one-line progress display on stderr (redrawn on a terminal, one line per epoch otherwise)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.tty = sys.stderr.isatty()

    def update(self, text: str, final: bool = False) -> None:
        if not self.enabled:
            return
        if self.tty:
            sys.stderr.write("\r\033[K" + text + ("\n" if final else ""))
            sys.stderr.flush()
        elif final:
            print(text, file=sys.stderr, flush=True)


@dataclass
class TrainResult:
    model: BNInception
    history: list[dict[str, float]]
    val_accuracy: float
    test_accuracy: float
    seconds: float
    parameters: int


def _make_optimizer(model: nn.Module, cfg: TrainConfig) -> tuple[torch.optim.Optimizer, Any]:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (no_decay if param.ndim <= 1 or name.endswith(".bias") else decay).append(param)
    optimizer = torch.optim.SGD([{"params": decay, "weight_decay": cfg.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}],
                                lr=cfg.lr, momentum=cfg.momentum)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=cfg.lr_decay)
    return optimizer, scheduler


def build_network(cfg: TrainConfig, bundle: DatasetBundle) -> BNInception:
    """The network of ``cfg``, re-seeded before ``init_weights`` so BN / no-BN variants start from equal weights."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model_config(bundle))
    if cfg.init != "pytorch":
        torch.manual_seed(cfg.seed)
        init_weights(model, cfg.init)  # type: ignore[arg-type]
    return model


def _restore(cfg: TrainConfig, checkpoint_path: str | None, model: BNInception, optimizer: Any, scheduler: Any
             ) -> tuple[list[dict[str, float]], int]:
    """``--resume``: model, optimizer, scheduler and RNG from the checkpoint; its history and last epoch."""
    if checkpoint_path is None:
        raise BninceptionError("--resume needs a checkpoint path")
    state = load(checkpoint_path, CHECKPOINT_FORMAT)
    saved = TrainConfig.from_dict(state["train_config"])
    if {**saved.to_dict(), "epochs": cfg.epochs} != cfg.to_dict():
        raise BninceptionError(f"{checkpoint_path} was trained with different settings "
                               f"({saved.to_dict()}); only --epochs may change on --resume")
    model.load_state_dict(model_from_state(state, checkpoint_path).state_dict())
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    log.info("resuming from %s after epoch %d", checkpoint_path, int(state["epoch"]))
    return list(state["history"]), int(state["epoch"])


def _wrap(model: BNInception, cfg: TrainConfig, ctx: DistContext) -> tuple[BNInception, nn.Module]:
    """The model (SyncBatchNorm with ``--sync-bn``) and the module that trains it (DDP when distributed)."""
    if cfg.sync_bn:
        if ctx.device.type != "cuda":
            raise BninceptionError("--sync-bn needs CUDA: PyTorch's SyncBatchNorm runs only on GPUs")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if not ctx.enabled:
        return model, model
    return model, nn.parallel.DistributedDataParallel(
        model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)


@dataclass
class _EpochTotals:
    seen: int = 0
    correct: int = 0
    loss_sum: float = 0.0
    steps: int = 0


def _train_epoch(net: nn.Module, bundle: DatasetBundle, cfg: TrainConfig, ctx: DistContext, optimizer: Any,
                 epoch: int, step: int, bar: Progress) -> _EpochTotals:
    """One pass over the training split (stopping at ``--max-steps``)."""
    net.train()
    bundle.train.set_epoch(epoch)
    order = epoch_order(len(bundle.train), cfg.seed, epoch, ctx)
    totals = _EpochTotals()
    epoch_start = time.perf_counter()
    n_batches = math.ceil(len(order) / cfg.batch_size)
    for batch_index, (x, y) in enumerate(iterate_batches(bundle.train, order, cfg.batch_size)):
        if len(y) < 2:  # BN needs more than one value per channel
            continue
        x, y = x.to(ctx.device), y.to(ctx.device)
        logits = net(x)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if not torch.isfinite(loss):
            raise BninceptionError(f"training diverged at epoch {epoch + 1} (loss {float(loss)}); lower --lr-scale")
        totals.seen += len(y)
        totals.steps += 1
        totals.loss_sum += loss.item() * len(y)
        totals.correct += int((logits.argmax(1) == y).sum())
        rate = totals.seen * ctx.world_size / (time.perf_counter() - epoch_start)
        bar.update(f"epoch {epoch + 1}/{cfg.epochs} [{batch_index + 1}/{n_batches}] "
                   f"loss {totals.loss_sum / totals.seen:.4f} acc {totals.correct / totals.seen:.3f} {rate:.0f} img/s")
        if cfg.max_steps and step + totals.steps >= cfg.max_steps:
            break
    return totals


def _epoch_record(epoch: int, totals: _EpochTotals, lr: float, val: tuple[float, float], seconds: float,
                  ctx: DistContext) -> dict[str, float]:
    """The history entry of one epoch, the training numbers summed over every process."""
    summed = all_reduce_sum(torch.tensor([totals.seen, totals.correct, totals.loss_sum], dtype=torch.float64), ctx)
    return {"epoch": epoch + 1, "steps": totals.steps, "lr": lr,
            "train_loss": float(summed[2] / max(summed[0], 1)),
            "train_accuracy": float(summed[1] / max(summed[0], 1)),
            "val_loss": val[1], "val_accuracy": val[0], "seconds": seconds,
            "images_per_second": float(summed[0]) / seconds}


def _checkpoint(path: str, cfg: TrainConfig, model: BNInception, optimizer: Any, scheduler: Any, epoch: int,
                history: list[dict[str, float]], bundle: DatasetBundle, labels: Any) -> None:
    save({"format": CHECKPOINT_FORMAT, "config": model.config.to_dict(), "train_config": cfg.to_dict(),
          "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
          "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
          "torch_rng": torch.get_rng_state(), "epoch": epoch, "history": history,
          "preprocess": bundle.preprocess.to_dict(), "labels": labels.ids, "label_names": labels.names}, path)


def train(cfg: TrainConfig, bundle: DatasetBundle, checkpoint_path: str | None = None, resume: bool = False,
          progress: bool = True, on_epoch: Callable[[int, dict[str, float]], None] | None = None,
          ctx: DistContext | None = None) -> TrainResult:
    """Train BN-Inception on ``bundle``; checkpoint atomically after every epoch (rank 0 only)."""
    ctx = ctx or init_distributed()
    labels = dataset_labels(bundle.labels, cfg.labels or None)  # a bad labels file fails before any epoch
    model = build_network(cfg, bundle).to(ctx.device)
    optimizer, scheduler = _make_optimizer(model, cfg)
    history: list[dict[str, float]] = []
    start_epoch = 0
    if resume:
        history, start_epoch = _restore(cfg, checkpoint_path, model, optimizer, scheduler)
    model, net = _wrap(model, cfg, ctx)
    bar = Progress(progress and ctx.is_main)
    started = time.perf_counter()
    step = len(history) and sum(h["steps"] for h in history)
    for epoch in range(start_epoch, cfg.epochs):
        epoch_start = time.perf_counter()
        totals = _train_epoch(net, bundle, cfg, ctx, optimizer, epoch, step, bar)
        lr = scheduler.get_last_lr()[0]
        scheduler.step()
        step += totals.steps
        val = evaluate(model.eval(), bundle.val, device=ctx.device)
        record = _epoch_record(epoch, totals, lr, val, time.perf_counter() - epoch_start, ctx)
        history.append(record)
        bar.update(f"epoch {epoch + 1}/{cfg.epochs} loss {record['train_loss']:.4f} "
                   f"acc {record['train_accuracy']:.3f} val {val[0]:.3f} "
                   f"{record['images_per_second']:.0f} img/s {record['seconds']:.1f}s", final=True)
        if ctx.is_main and checkpoint_path is not None:
            _checkpoint(checkpoint_path, cfg, model, optimizer, scheduler, epoch + 1, history, bundle, labels)
        if on_epoch is not None:
            on_epoch(epoch + 1, record)
        if cfg.max_steps and step >= cfg.max_steps:
            break
    model.eval()
    val_acc, _ = evaluate(model, bundle.val, device=ctx.device)
    test_acc, _ = evaluate(model, bundle.test, device=ctx.device)
    return TrainResult(model=model, history=history, val_accuracy=val_acc, test_accuracy=test_acc,
                       seconds=time.perf_counter() - started, parameters=count_parameters(model))
