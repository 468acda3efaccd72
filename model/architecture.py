"""BN-Inception (Inception-v2) exactly as the paper's appendix Table 5, with the table kept as data.

Every conv is bias-free and followed by BatchNorm then the nonlinearity; names follow the
Caffe-converted weights, so importing them is a rename.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import torch
from torch import nn

from bninception.core.errors import BninceptionError

Activation = Literal["relu", "sigmoid"]
InitScheme = Literal["pytorch", "xavier"]
GOOGLENET_CONV_BIAS = 0.2  # bvlc_googlenet's constant bias filler for every conv


@dataclass(frozen=True)
class InceptionRow:
    """One row of Table 5. ``proj == 0`` with ``pool == 'max'`` and stride 2 is the pass-through."""

    name: str
    c1x1: int
    c3x3_reduce: int
    c3x3: int
    double_reduce: int
    double_3x3: int
    pool: Literal["avg", "max"]
    proj: int
    stride: int = 1


# stage    1x1  3x3red 3x3  d3x3red d3x3 pool   proj  stride      out (full width)
TABLE5: tuple[InceptionRow, ...] = (
    InceptionRow("3a", 64, 64, 64, 64, 96, "avg", 32),        # 28x28x256
    InceptionRow("3b", 64, 64, 96, 64, 96, "avg", 64),        # 28x28x320
    InceptionRow("3c", 0, 128, 160, 64, 96, "max", 0, 2),     # 14x14x576
    InceptionRow("4a", 224, 64, 96, 96, 128, "avg", 128),     # 14x14x576
    InceptionRow("4b", 192, 96, 128, 96, 128, "avg", 128),    # 14x14x576
    InceptionRow("4c", 160, 128, 160, 128, 160, "avg", 128),  # 14x14x608
    InceptionRow("4d", 96, 128, 192, 160, 192, "avg", 128),   # 14x14x608
    InceptionRow("4e", 0, 128, 192, 192, 256, "max", 0, 2),   # 7x7x1056
    InceptionRow("5a", 352, 192, 320, 160, 224, "avg", 128),  # 7x7x1024
    InceptionRow("5b", 352, 192, 320, 192, 224, "max", 128),  # 7x7x1024
)
STEM_CHANNELS = (64, 64, 192)  # conv 7x7/2 64; conv 1x1 64; conv 3x3 192
# Smallest square input for which every (ceil-mode, unpadded) stride-2 pool still has a window.
@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the network (stored in checkpoints and model.pt)."""

    num_classes: int = 1000
    in_channels: int = 3
    activation: Activation = "relu"
    width: float = 1.0
    batchnorm: bool = True
    dropout: float = 0.0
    bn_eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.num_classes < 1 or self.in_channels < 1:
            raise BninceptionError(f"num_classes and in_channels must be positive: {self}")
        if self.activation not in ("relu", "sigmoid"):
            raise BninceptionError(f"activation must be 'relu' or 'sigmoid', got {self.activation!r}")
        if not 0 < self.width <= 4:
            raise BninceptionError(f"width must be in (0, 4], got {self.width}")
        if not 0 <= self.dropout < 1:
            raise BninceptionError(f"dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise BninceptionError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**data)

    def channels(self, count: int) -> int:
        """A Table 5 channel count scaled by the width multiplier (0 stays 0)."""
        return 0 if count == 0 else max(1, round(count * self.width))


class ConvBN(nn.Module):
    """conv -> BN -> nonlinearity (the paper's placement); the conv has a bias only without BN."""

    def __init__(self, cin: int, cout: int, kernel: int, cfg: ModelConfig, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=not cfg.batchnorm)
        self.bn = nn.BatchNorm2d(cout, eps=cfg.bn_eps) if cfg.batchnorm else nn.Identity()
        self.act = nn.ReLU() if cfg.activation == "relu" else nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class InceptionModule(nn.Module):
    """One Table 5 module: 1x1 | 3x3 reduce -> 3x3 | double 3x3 reduce -> 3x3 -> 3x3 | pool (+ proj)."""

    def __init__(self, row: InceptionRow, cin: int, cfg: ModelConfig) -> None:
        super().__init__()
        ch = cfg.channels
        self.branches = nn.ModuleDict()
        if row.c1x1:
            self.branches["1x1"] = ConvBN(cin, ch(row.c1x1), 1, cfg)
        self.branches["3x3_reduce"] = ConvBN(cin, ch(row.c3x3_reduce), 1, cfg)
        self.branches["3x3"] = ConvBN(ch(row.c3x3_reduce), ch(row.c3x3), 3, cfg, stride=row.stride)
        self.branches["double_3x3_reduce"] = ConvBN(cin, ch(row.double_reduce), 1, cfg)
        self.branches["double_3x3_1"] = ConvBN(ch(row.double_reduce), ch(row.double_3x3), 3, cfg)
        self.branches["double_3x3_2"] = ConvBN(ch(row.double_3x3), ch(row.double_3x3), 3, cfg,
                                               stride=row.stride)
        if row.stride == 2:  # pass-through max pool, no projection (3c, 4e)
            self.pool: nn.Module = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        elif row.pool == "max":
            self.pool = nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True)
        else:
            self.pool = nn.AvgPool2d(3, stride=1, padding=1, ceil_mode=True, count_include_pad=True)
        if row.proj:
            self.branches["pool_proj"] = ConvBN(cin, ch(row.proj), 1, cfg)
        self.out_channels = (ch(row.c1x1) + ch(row.c3x3) + ch(row.double_3x3)
                             + (ch(row.proj) if row.proj else cin))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.branches
        outs = []
        if "1x1" in b:
            outs.append(b["1x1"](x))
        outs.append(b["3x3"](b["3x3_reduce"](x)))
        outs.append(b["double_3x3_2"](b["double_3x3_1"](b["double_3x3_reduce"](x))))
        pooled = self.pool(x)
        outs.append(b["pool_proj"](pooled) if "pool_proj" in b else pooled)
        return torch.cat(outs, dim=1)


class BNInception(nn.Module):
    """BN-Inception per Table 5; a global average pool lets small inputs (32x32 -> 1x1 at 5b) work."""

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        cfg = config or ModelConfig()
        self.config = cfg
        c1, c2r, c2 = (cfg.channels(c) for c in STEM_CHANNELS)
        self.conv1_7x7_s2 = ConvBN(cfg.in_channels, c1, 7, cfg, stride=2)
        self.pool1_3x3_s2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2_3x3_reduce = ConvBN(c1, c2r, 1, cfg)
        self.conv2_3x3 = ConvBN(c2r, c2, 3, cfg)
        self.pool2_3x3_s2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        channels = c2
        self.inception = nn.ModuleDict()
        for row in TABLE5:
            module = InceptionModule(row, channels, cfg)
            self.inception[row.name] = module
            channels = module.out_channels
        self.num_features = channels
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        self.last_linear = nn.Linear(channels, cfg.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1_3x3_s2(self.conv1_7x7_s2(x))
        x = self.pool2_3x3_s2(self.conv2_3x3(self.conv2_3x3_reduce(x)))
        for module in self.inception.values():
            x = module(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.global_pool(self.features(x)), 1)
        return self.last_linear(self.dropout(x))


def build_model(config: ModelConfig | dict[str, Any] | None = None) -> BNInception:
    if isinstance(config, dict):
        config = ModelConfig.from_dict(config)
    return BNInception(config)


def init_weights(model: nn.Module, scheme: InitScheme) -> nn.Module:
    """Redraw every conv and linear layer in place: ``"xavier"`` is GoogLeNet's Caffe filler (uniform,
    variance 1 / fan_in; classifier bias 0), ``"pytorch"`` keeps PyTorch's default.
    """
    if scheme not in ("pytorch", "xavier"):
        raise BninceptionError(f"init must be 'pytorch' or 'xavier', got {scheme!r}")
    if scheme == "pytorch":
        return model
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            bound = (3.0 / module.weight[0].numel()) ** 0.5  # fan_in: one output's inputs
            nn.init.uniform_(module.weight, -bound, bound)
            if module.bias is not None:
                nn.init.constant_(module.bias, GOOGLENET_CONV_BIAS if isinstance(module, nn.Conv2d) else 0.0)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
