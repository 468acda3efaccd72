"""Triton model configuration as a dict with ``ModelConfig``'s field names: JSON, gRPC and ``config.pbtxt``."""

from __future__ import annotations

from typing import Any

from bninception.serve.model_info import ModelInfo

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


def to_pbtxt(config: dict[str, Any]) -> str:
    """Protobuf text format of a ModelConfig dict (through the generated ModelConfig message)."""
    from google.protobuf import json_format, text_format

    from bninception.serve.proto import inference_pb2

    return text_format.MessageToString(json_format.ParseDict(config, inference_pb2.ModelConfig()))
