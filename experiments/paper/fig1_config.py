"""Figure 1's settings, torch-free (the CLI makes its options from them without importing torch)."""

from __future__ import annotations

from dataclasses import dataclass

from bninception.core.errors import BninceptionError
from bninception.core.settings import check_settings, setting


@dataclass(frozen=True)
class Fig1Config:
    """Everything that determines a Figure 1 run."""

    hidden: int = 100  # the network: layers x hidden sigmoid units, weights ~ N(0, init_std)
    layers: int = 3
    init_std: float = 0.1
    steps: int = setting(20000, "training steps (plain SGD on mini-batches)", low=1)
    batch_size: int = 60
    lr: float = 0.5
    eval_every: int = setting(200, "steps between records", low=1)
    neuron: int = 0  # which last-hidden-layer sigmoid input is tracked
    probe: int = 360  # fixed probe inputs (the first N test images)
    seed: int = 0

    def __post_init__(self) -> None:
        check_settings(self, "fig1 settings")
        if self.batch_size < 2:
            raise BninceptionError(f"batch_size must be >= 2, got {self.batch_size}")
        if not 0 <= self.neuron < self.hidden:
            raise BninceptionError(f"neuron must be in [0, {self.hidden}), got {self.neuron}")
