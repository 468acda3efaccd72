"""The training recipe and the input-size rule, torch-free (the CLI reads its defaults from here)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from bninception.core.errors import BninceptionError

if TYPE_CHECKING:
    from bninception.model.architecture import ModelConfig
    from bninception.model.data import DatasetBundle

INCEPTION_WEIGHT_DECAY = 2e-4  # GoogLeNet's L2; the paper reduces it 5x with BN
MIN_INPUT_SIZE = 31  # the stride-2 pools of 3c and 4e need at least this many pixels
INIT_SCHEMES = ("pytorch", "xavier")  # PyTorch's defaults, or GoogLeNet's Caffe fillers (architecture.init_weights)


def check_input_size(size: int) -> None:
    if size < MIN_INPUT_SIZE:
        raise BninceptionError(f"image size {size} is too small for BN-Inception: the stride-2 pools of "
                               f"3c and 4e need an input of at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE}")


def default_image_size(data: str) -> int:
    """32 for the built-in digits (8x8 upsampled), 224 (the paper's size) for an ImageFolder."""
    return 32 if data == "digits" else 224


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run; the defaults are the demo recipe (BN-x5 on digits)."""

    data: str = "digits"
    image_size: int = 32
    width: float = 0.25
    activation: str = "relu"
    batchnorm: bool = True
    dropout: float = 0.0
    epochs: int = 30
    batch_size: int = 64
    base_lr: float = 0.01
    lr_scale: float = 5.0
    momentum: float = 0.9
    weight_decay: float = INCEPTION_WEIGHT_DECAY / 5
    lr_decay: float = 0.9
    seed: int = 0
    sync_bn: bool = False
    max_steps: int = 0  # 0: no limit (used by short experiments)
    init: str = "pytorch"  # how conv / linear weights are drawn (INIT_SCHEMES)

    def __post_init__(self) -> None:
        check_input_size(self.image_size)
        if self.init not in INIT_SCHEMES:
            raise BninceptionError(f"init must be one of {list(INIT_SCHEMES)}, got {self.init!r}")
        if self.epochs < 1 or self.batch_size < 2:
            raise BninceptionError(f"--epochs must be >= 1 and --batch-size >= 2, got {self.epochs}, "
                                   f"{self.batch_size}")
        if self.lr <= 0 or not 0 < self.lr_decay <= 1:
            raise BninceptionError(f"the learning rate must be > 0 and --lr-decay in (0, 1]; got "
                                   f"{self.lr}, {self.lr_decay}")

    @property
    def lr(self) -> float:
        return self.base_lr * self.lr_scale

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def model_config(self, bundle: DatasetBundle) -> ModelConfig:
        from bninception.model.architecture import ModelConfig

        return ModelConfig(num_classes=bundle.num_classes, in_channels=bundle.in_channels,
                           activation=self.activation,  # type: ignore[arg-type]
                           width=self.width, batchnorm=self.batchnorm, dropout=self.dropout)
