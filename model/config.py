"""The training recipe and the input-size rule, torch-free (the CLI reads its defaults from here)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from bninception.core.errors import BninceptionError
from bninception.core.settings import check_settings, setting

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

    data: str = setting("digits", "'digits' (built-in) or an ImageFolder path")
    labels: str = setting("", "labels file naming the ImageFolder's classes: one name per line (folders in "
                              "sorted order), or folder<TAB>name per line")
    image_size: int = 32  # the CLI's default follows --data (default_image_size)
    width: float = setting(0.25, "channel width multiplier", low=0, above=True)
    activation: str = setting("relu", "the nonlinearity after every BN", choices=("relu", "sigmoid"))
    batchnorm: bool = setting(True, "BatchNorm after every conv (--no-batchnorm: the paper's Inception baseline)")
    dropout: float = setting(0.0, "dropout before the classifier", low=0)
    epochs: int = setting(30, "training epochs", low=1)
    batch_size: int = setting(64, "per process", low=2)
    base_lr: float = setting(0.01, "the base learning rate", low=0, above=True)
    lr_scale: float = setting(5.0, "times the base rate: 1, 5 (BN-x5), 30 (BN-x30)", low=0, above=True)
    momentum: float = 0.9
    weight_decay: float = INCEPTION_WEIGHT_DECAY / 5
    lr_decay: float = setting(0.9, "exponential learning-rate decay per epoch, in (0, 1]", low=0, above=True, high=1)
    seed: int = setting(0, "seed of the weights, the split, the shuffle and the augmentation")
    sync_bn: bool = setting(False, "SyncBatchNorm under torchrun (GPU)")
    max_steps: int = 0  # 0: no limit (used by short experiments)
    init: str = setting("pytorch", "conv/linear weights: PyTorch's defaults or GoogLeNet's xavier fillers",
                        choices=INIT_SCHEMES)

    def __post_init__(self) -> None:
        check_input_size(self.image_size)
        check_settings(self, "training settings")

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
