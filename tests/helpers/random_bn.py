"""Networks with random BatchNorm state, for the fold tests and the peer benchmark (benchmarks/fold_peers.py).

The small models cover what BN-Inception lacks: BN before conv, ConvTranspose -> BN, Linear -> BatchNorm1d.
"""

from __future__ import annotations

import os

import torch
from torch import nn


@torch.no_grad()
def randomize_bn(model: nn.Module, example: torch.Tensor, seed: int = 0) -> nn.Module:
    """Random gamma, beta; running stats from ``example`` (batch statistics) times random factors."""
    generator = torch.Generator().manual_seed(seed)
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in layers:
        n = bn.num_features
        bn.weight.copy_(torch.rand(n, generator=generator) + 0.5)
        bn.bias.copy_(torch.randn(n, generator=generator) * 0.2)
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: one batch gives exactly its statistics
    model.train()
    model(example)
    for bn in layers:
        n = bn.num_features
        assert bn.running_mean is not None and bn.running_var is not None
        bn.running_mean.add_(torch.randn(n, generator=generator) * 0.05)
        bn.running_var.mul_(torch.rand(n, generator=generator) * 0.4 + 0.8)
        bn.momentum = 0.1
    return model.eval()


class DenseBlock(nn.Module):
    """DenseNet-style: BN -> ReLU -> Conv on concatenated features; BN on the input too."""

    def __init__(self, channels: int = 8, growth: int = 6, layers: int = 3) -> None:
        super().__init__()
        self.stem_bn = nn.BatchNorm2d(channels)  # BN on the graph input: standalone
        self.layers = nn.ModuleList()
        c = channels
        for _ in range(layers):
            layer = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, growth, 3, padding=1))
            self.layers.append(layer)
            c += growth
        self.transition = nn.Sequential(nn.AvgPool2d(2), nn.BatchNorm2d(c), nn.Conv2d(c, 10, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_bn(x)
        for layer in self.layers:
            x = torch.cat([x, layer(x)], dim=1)
        return self.transition(x).mean(dim=(2, 3))


class Decoder(nn.Module):
    """ConvTranspose -> BN -> ReLU, with a grouped transposed conv."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.ConvTranspose2d(8, 12, 4, stride=2, padding=1), nn.BatchNorm2d(12), nn.ReLU(),
            nn.ConvTranspose2d(12, 6, 3, stride=2, padding=1, output_padding=1, groups=3, bias=False),
            nn.BatchNorm2d(6), nn.ReLU(),
            nn.Conv2d(6, 3, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MLP(nn.Module):
    """Linear -> BatchNorm1d -> ReLU twice, then a classifier."""

    def __init__(self, features: int = 20, hidden: int = 32, classes: int = 5) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(features, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
            nn.Linear(hidden, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(),
            nn.Linear(hidden, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def small_models(seed: int = 0) -> dict[str, tuple[nn.Module, tuple[int, ...]]]:
    """name -> (eval model with random BN state, input shape without the batch axis)."""
    torch.manual_seed(seed)
    shapes = {"densenet_block": (8, 16, 16), "convtranspose_decoder": (8, 8, 8), "mlp_bn1d": (20,)}
    built = {"densenet_block": DenseBlock(), "convtranspose_decoder": Decoder(), "mlp_bn1d": MLP()}
    out = {}
    for name, model in built.items():
        example = torch.randn(16, *shapes[name])
        out[name] = (randomize_bn(model, example, seed), shapes[name])
    return out


def save_random_model(path: str, config: object, preprocess: object, seed: int = 0,
                      batch: int | None = None) -> nn.Module:
    """Write a ``model.pt`` of ``build_model(config)`` with random BN state, recorded in its run directory's
    manifest as the population stage's output; return the eval model."""
    from bninception.core.rundir import RunDir
    from bninception.model.architecture import build_model
    from bninception.model.checkpoint import save_model
    from bninception.model.labels import ClassLabels

    torch.manual_seed(seed)
    model = build_model(config)  # type: ignore[arg-type]
    size = preprocess.size  # type: ignore[attr-defined]
    batch = batch or (32 if size <= 64 else 4)  # enough values per channel at the 1x1 stages
    example = torch.randn(batch, model.config.in_channels, size, size)
    randomize_bn(model, example, seed)
    labels = ClassLabels.plain([f"class{i}" for i in range(model.config.num_classes)])
    save_model(path, model, preprocess, labels, statistics="random (test)")  # type: ignore[arg-type]
    RunDir(os.path.dirname(path)).record("population", {"random": seed}, [], [os.path.basename(path)], 0.0)
    return model
