"""Triton Inference Server model configuration: built as a dict, rendered as ``config.pbtxt``.

The dict has the field names of Triton's ``ModelConfig`` protobuf (``model_config.proto``), so the
same structure answers ``GET /v2/models/{name}/config`` as JSON and renders to protobuf text
format without depending on tritonclient at run time.
"""

from __future__ import annotations

import json
from typing import Any

from bninception.serve.model_info import ModelInfo

ENUM_FIELDS = {"data_type", "kind", "format"}
TRITON_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "float64": "TYPE_FP64"}


def model_config(info: ModelInfo, name: str, max_batch: int, max_delay_us: int, *,
                 platform: str | None = None, backend: str | None = None, instances: int = 1,
                 kind: str = "KIND_AUTO", label_file: str | None = None) -> dict[str, Any]:
    """A Triton ModelConfig for a classifier with one NCHW input and (N, classes) logits."""
    config: dict[str, Any] = {"name": name}
    if platform:
        config["platform"] = platform
    if backend:
        config["backend"] = backend
    output: dict[str, Any] = {"name": info.output, "data_type": "TYPE_FP32", "dims": [info.num_classes]}
    if label_file:
        output["label_filename"] = label_file
    config.update({
        "max_batch_size": max_batch,
        "input": [{"name": info.input.name, "data_type": TRITON_TYPES[info.input.dtype],
                   "dims": list(info.item_shape)}],
        "output": [output],
        "dynamic_batching": {"max_queue_delay_microseconds": max_delay_us},
        "instance_group": [{"count": instances, "kind": kind}],
        "version_policy": {"latest": {"num_versions": 1}},
    })
    return config


def _scalar(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return value if key in ENUM_FIELDS else json.dumps(value)
    raise TypeError(f"cannot render {key}={value!r} in protobuf text format")


def _render(message: dict[str, Any], indent: int) -> list[str]:
    pad = "  " * indent
    lines: list[str] = []
    for key, value in message.items():
        if isinstance(value, dict):
            lines += [f"{pad}{key} {{", *_render(value, indent + 1), f"{pad}}}"]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            lines.append(f"{pad}{key} [")
            for i, item in enumerate(value):
                lines += [f"{pad}  {{", *_render(item, indent + 2),
                          f"{pad}  }}{',' if i < len(value) - 1 else ''}"]
            lines.append(f"{pad}]")
        elif isinstance(value, list):
            lines.append(f"{pad}{key}: [{', '.join(_scalar(key, v) for v in value)}]")
        else:
            lines.append(f"{pad}{key}: {_scalar(key, value)}")
    return lines


def to_pbtxt(config: dict[str, Any]) -> str:
    """Protobuf text format of a ModelConfig dict."""
    return "\n".join(_render(config, 0)) + "\n"
