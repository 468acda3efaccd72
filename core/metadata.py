"""The ONNX ``metadata_props`` a run's models carry (preprocessing, labels, model config, model.pt's sha256).

Written at export and read here only, from a ModelProto or a session's ``custom_metadata_map``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bninception.core.errors import BninceptionError
from bninception.core.preprocess import Preprocess

if TYPE_CHECKING:
    import onnx

PREPROCESS = "bninception.preprocess"
LABELS = "bninception.labels"
LABEL_NAMES = "bninception.label_names"
CONFIG = "bninception.model_config"
SOURCE_SHA256 = "bninception.source_sha256"
KEYS = (PREPROCESS, LABELS, LABEL_NAMES, CONFIG, SOURCE_SHA256)


@dataclass(frozen=True)
class ModelMetadata:
    """The parsed entries; each is optional (a model from elsewhere may have none)."""

    preprocess: Preprocess | None
    labels: list[str] | None
    config: dict[str, Any]
    source_sha256: str
    label_names: list[str] | None = None  # readable names of the classes whose ids ``labels`` holds

    def labels_for(self, num_classes: int) -> list[str]:
        """The class names, or their indices when none are recorded."""
        return list(self.labels) if self.labels is not None else [str(i) for i in range(num_classes)]

    def names_for(self, num_classes: int) -> list[str]:
        """The readable class names, or the class ids when none are recorded."""
        return list(self.label_names) if self.label_names is not None else self.labels_for(num_classes)


def entries(preprocess: Preprocess, labels: Sequence[str], config: Mapping[str, Any] | None,
            source_sha256: str | None, label_names: Sequence[str] | None = None) -> dict[str, str]:
    """The ``metadata_props`` of an exported model (class ids in ``labels``, their names in ``label_names``)."""
    values = {
        PREPROCESS: preprocess.to_json(),
        LABELS: json.dumps([str(label) for label in labels]),
        CONFIG: json.dumps(dict(config or {}), sort_keys=True),
        SOURCE_SHA256: source_sha256 or "",
    }
    if label_names is not None and list(label_names) != list(labels):
        values[LABEL_NAMES] = json.dumps([str(name) for name in label_names])
    return values


def write(model: onnx.ModelProto, values: Mapping[str, str]) -> None:
    """Replace ``model``'s metadata_props with ``values``."""
    import onnx

    del model.metadata_props[:]
    for key, value in values.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))


def props(model: onnx.ModelProto) -> dict[str, str]:
    """``model``'s metadata_props as a plain map."""
    return {entry.key: entry.value for entry in model.metadata_props}


def _json(raw: str, key: str, source: str) -> Any:
    from bninception.core.files import parse_json

    return parse_json(raw, f"{source}: metadata {key}")


def parse(values: Mapping[str, str], source: str, num_classes: int | None = None) -> ModelMetadata:
    """Parse the map (labels must name ``num_classes`` classes when given); errors name ``source`` and the key."""
    preprocess = None
    if values.get(PREPROCESS):
        data = _json(values[PREPROCESS], PREPROCESS, source)
        try:
            preprocess = Preprocess.from_dict(data)
        except (BninceptionError, TypeError, ValueError) as exc:
            raise BninceptionError(f"{source}: metadata {PREPROCESS} is not valid: {exc}") from exc
    labels, names = (_label_list(values, key, source, num_classes) for key in (LABELS, LABEL_NAMES))
    config = _json(values[CONFIG], CONFIG, source) if values.get(CONFIG) else {}
    if not isinstance(config, dict):
        raise BninceptionError(f"{source}: metadata {CONFIG} must be a JSON object")
    return ModelMetadata(preprocess, labels, config, values.get(SOURCE_SHA256, ""), names)


def _label_list(values: Mapping[str, str], key: str, source: str, num_classes: int | None) -> list[str] | None:
    if not values.get(key):
        return None
    data = _json(values[key], key, source)
    if not isinstance(data, list):
        raise BninceptionError(f"{source}: metadata {key} must be a JSON list of class names")
    if num_classes is not None and len(data) != num_classes:
        raise BninceptionError(f"{source}: metadata {key} must list {num_classes} class names, got {len(data)} entries")
    return [str(label) for label in data]


def read(model: onnx.ModelProto, source: str, num_classes: int | None = None) -> ModelMetadata:
    """:func:`parse` of an ``onnx.ModelProto``."""
    return parse(props(model), source, num_classes)
