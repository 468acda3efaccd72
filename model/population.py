"""Population statistics for inference BatchNorm: the paper's Algorithm 2.

With the weights frozen, N training mini-batches of size M pass through the network with every
BN layer normalising by its batch statistics (as in training). For each BN layer and channel:

    E[x]   = mean over batches of mu_B
    Var[x] = m / (m - 1) * mean over batches of sigma2_B     (m = M * H * W values per channel)

These replace the running (EMA) statistics; the layers are then put in eval mode, so the network
is in inference form and export still sees BatchNormalization nodes for the folding pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bninception.core.errors import BninceptionError
from bninception.model.data import AugmentedDataset
from bninception.model.distributed import DistContext, all_reduce_sum, init_distributed
from bninception.model.train import epoch_order, iterate_batches

BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


@dataclass
class LayerStatistics:
    """Per-channel running sums of batch means and biased batch variances for one BN layer."""

    mean_sum: torch.Tensor
    var_sum: torch.Tensor
    batches: int = 0
    values_per_channel: int = 0  # m of the last batch (all batches share it: drop_last)


def bn_layers(model: nn.Module) -> dict[str, nn.modules.batchnorm._BatchNorm]:
    return {name: m for name, m in model.named_modules() if isinstance(m, BN_TYPES)}


class PopulationCollector:
    """Hooks every BN layer to record (mu_B, sigma2_B) of its input, in float64."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.layers = bn_layers(model)
        if not self.layers:
            raise BninceptionError("the model has no BatchNorm layers: nothing to compute")
        self.stats = {name: LayerStatistics(torch.zeros(m.num_features, dtype=torch.float64),
                                            torch.zeros(m.num_features, dtype=torch.float64))
                      for name, m in self.layers.items()}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> PopulationCollector:
        for name, module in self.layers.items():
            self._handles.append(module.register_forward_pre_hook(self._hook(name)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()

    def _hook(self, name: str):
        def record(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            x = inputs[0].detach().double()
            dims = [0, *range(2, x.ndim)]
            stat = self.stats[name]
            stat.mean_sum += x.mean(dim=dims).cpu()
            stat.var_sum += x.var(dim=dims, unbiased=False).cpu()
            stat.batches += 1
            stat.values_per_channel = x.numel() // x.shape[1]
        return record


def population_statistics(stats: dict[str, LayerStatistics], ctx: DistContext
                          ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Algorithm 2's (E[x], Var[x]) per layer, summed over ranks under DDP."""
    result = {}
    for name, stat in stats.items():
        packed = torch.cat([stat.mean_sum, stat.var_sum, torch.tensor([float(stat.batches)],
                                                                      dtype=torch.float64)])
        packed = all_reduce_sum(packed, ctx)
        channels = len(stat.mean_sum)
        batches = packed[-1]
        m = stat.values_per_channel
        if m < 2:
            raise BninceptionError(f"BN layer {name}: {m} value(s) per channel per batch; "
                                   f"population variance needs m >= 2 (raise --batch-size)")
        mean = packed[:channels] / batches
        var = packed[channels:2 * channels] / batches * (m / (m - 1))
        result[name] = (mean, var)
    return result


@dataclass
class PopulationResult:
    statistics: dict[str, tuple[torch.Tensor, torch.Tensor]]
    batches: int
    batch_size: int
    layer_differences: dict[str, dict[str, float]]


@torch.no_grad()
def apply_population_statistics(model: nn.Module, dataset: AugmentedDataset, batches: int = 16,
                                batch_size: int = 64, seed: int = 0,
                                ctx: DistContext | None = None) -> PopulationResult:
    """Replace every BN layer's running statistics by Algorithm 2's (``batches`` per rank); leaves eval mode."""
    ctx = ctx or init_distributed()
    if batch_size < 2:
        raise BninceptionError("--batch-size must be at least 2")
    available = len(dataset) // (batch_size * ctx.world_size)
    if available < 1:
        raise BninceptionError(f"the training split has {len(dataset)} images: fewer than one batch of "
                               f"{batch_size} per rank")
    batches = min(batches, available)
    augment = getattr(dataset, "augment", False)  # un-augmented images; a plain dataset has none
    if augment:
        dataset.augment = False
    model.eval()
    layers = bn_layers(model)
    for module in layers.values():
        module.train()  # normalise with batch statistics, as in training (Algorithm 1)
    saved = {name: (m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
             for name, m in layers.items()}
    try:
        order = epoch_order(len(dataset), seed, 0, ctx)[: batches * batch_size]
        device = next(model.parameters()).device
        with PopulationCollector(model) as collector:
            for x, _ in iterate_batches(dataset, order, batch_size):
                model(x.to(device))
        stats = population_statistics(collector.stats, ctx)
    finally:
        if augment:
            dataset.augment = augment
        model.eval()
    differences = {}
    for name, module in layers.items():
        ema_mean, ema_var, tracked = saved[name]
        mean, var = stats[name]
        module.running_mean.copy_(mean.to(module.running_mean.dtype))
        module.running_var.copy_(var.to(module.running_var.dtype))
        module.num_batches_tracked.copy_(tracked)
        differences[name] = {
            "mean_rel_diff": _relative(mean, ema_mean), "var_rel_diff": _relative(var, ema_var)}
    return PopulationResult(stats, batches, batch_size, differences)


def _relative(new: torch.Tensor, old: torch.Tensor) -> float:
    old64 = old.double()
    return float(torch.linalg.vector_norm(new.double() - old64) /
                 max(float(torch.linalg.vector_norm(old64)), 1e-12))

