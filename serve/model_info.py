"""What the server knows about a model: its interface (from the Runner: one NCHW float input, first
output = logits) and the metadata export recorded (labels, preprocessing; each optional)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bninception.core import metadata
from bninception.core.errors import BninceptionError
from bninception.core.runner import InputSpec

if TYPE_CHECKING:
    from bninception.core.preprocess import Preprocess
    from bninception.core.runner import OrtRunner

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelInfo:
    """The served model's interface and the metadata recorded at export."""

    path: Path
    input: InputSpec
    output: str
    num_classes: int
    labels: list[str]  # class ids
    preprocess: Preprocess | None
    metadata: dict[str, str] = field(default_factory=dict)
    label_names: list[str] = field(default_factory=list)  # readable names (the ids when none are recorded)

    @property
    def item_shape(self) -> tuple[int, int, int]:
        return self.input.item_shape


def read_model_info(runner: OrtRunner, path: str | os.PathLike[str]) -> ModelInfo:
    """Interface + metadata of a classifier (one NCHW input, first output = ``(N, classes)`` logits)."""
    path = Path(path)
    spec = runner.input_spec
    output = runner.session.get_outputs()[0]
    if len(output.shape) != 2 or not isinstance(output.shape[1], int):
        raise BninceptionError(f"{path}: output {output.name!r} must be (N, classes), got {output.shape}")
    num_classes = int(output.shape[1])
    values = dict(runner.session.get_modelmeta().custom_metadata_map)
    meta = metadata.parse(values, str(path), num_classes)
    pre = meta.preprocess
    if pre is None:
        log.warning("%s records no preprocessing (%s): /v1/classify is disabled", path, metadata.PREPROCESS)
    elif (pre.channels, pre.size, pre.size) != spec.item_shape:
        raise BninceptionError(
            f"{path}: recorded preprocessing makes {pre.channels}x{pre.size}x{pre.size} images but input "
            f"{spec.name!r} takes {spec.channels}x{spec.height}x{spec.width}")
    return ModelInfo(path=path, input=spec, output=output.name, num_classes=num_classes,
                     labels=meta.labels_for(num_classes), preprocess=pre, metadata=values,
                     label_names=meta.names_for(num_classes))
