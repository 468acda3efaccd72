"""PyTorch inference-form network -> ONNX, with the BatchNormalization nodes kept for our folding pass.

Exported in ``TrainingMode.PRESERVE`` so the exporter's own Conv+BN peephole does not run
(docs/decisions.md, "Export keeps BatchNorm").
"""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING

from bninception.core.errors import BninceptionError
from bninception.core.files import atomic_write_bytes

if TYPE_CHECKING:
    import onnx
    import torch

    from bninception.core.preprocess import Preprocess
    from bninception.model.labels import ClassLabels

INPUT_NAME = "data"
OUTPUT_NAME = "logits"
OPSET_RANGE = (13, 21)


def check_opset(opset: int) -> int:
    if not OPSET_RANGE[0] <= int(opset) <= OPSET_RANGE[1]:
        raise BninceptionError(f"--opset must be in {OPSET_RANGE[0]}..{OPSET_RANGE[1]}, got {opset}")
    return int(opset)


def remove_identities(model: onnx.ModelProto) -> int:
    """Drop ``Identity`` nodes whose output is not a graph output; consumers read the input instead."""
    graph = model.graph
    outputs = {o.name for o in graph.output}
    rename: dict[str, str] = {}
    kept = []
    for node in graph.node:
        if node.op_type == "Identity" and node.domain in ("", "ai.onnx") and node.output[0] not in outputs:
            source = node.input[0]
            rename[node.output[0]] = rename.get(source, source)
            continue
        kept.append(node)
    if not rename:
        return 0
    for node in kept:
        for index, name in enumerate(node.input):
            if name in rename:
                node.input[index] = rename[name]
    del graph.node[:]
    graph.node.extend(kept)
    stale = [v for v in graph.value_info if v.name in rename]
    for value in stale:
        graph.value_info.remove(value)
    return len(rename)


def explicit_pool_pads(model: onnx.ModelProto) -> int:
    """Rewrite ceil-mode MaxPools whose window exceeds the padded input as end pads (same output; OpenVINO
    refuses the former); return how many changed.
    """
    from bninception.export.graph import get_attr, infer_types, set_attr

    inferred = infer_types(model).graph
    shapes = {v.name: [d.dim_value if d.HasField("dim_value") else 0 for d in v.type.tensor_type.shape.dim]
              for v in [*inferred.input, *inferred.value_info, *inferred.output]}
    changed = 0
    for node in model.graph.node:
        if node.op_type != "MaxPool" or not get_attr(node, "ceil_mode", 0):
            continue
        if get_attr(node, "auto_pad", b"NOTSET") != b"NOTSET":  # SAME_* / VALID: no explicit pads allowed
            continue
        kernel = list(get_attr(node, "kernel_shape"))  # type: ignore[arg-type]
        n = len(kernel)
        strides = list(get_attr(node, "strides", [1] * n))  # type: ignore[arg-type]
        dilations = list(get_attr(node, "dilations", [1] * n))  # type: ignore[arg-type]
        pads = list(get_attr(node, "pads", [0] * 2 * n))  # type: ignore[arg-type]
        source, result = shapes.get(node.input[0], [])[2:], shapes.get(node.output[0], [])[2:]
        if len(source) != n or len(result) != n or not all(source + result):
            continue  # spatial sizes unknown: leave it
        span = [(k - 1) * d + 1 for k, d in zip(kernel, dilations, strict=True)]
        if all(span[i] <= source[i] + pads[i] + pads[n + i] for i in range(n)):
            continue
        ends = [max(pads[n + i], (result[i] - 1) * strides[i] + span[i] - source[i] - pads[i]) for i in range(n)]
        set_attr(node, "pads", pads[:n] + ends)
        set_attr(node, "ceil_mode", 0)
        changed += 1
    return changed


def to_model_proto(model: torch.nn.Module, input_shape: tuple[int, ...],
                   opset: int = 17) -> onnx.ModelProto:
    """Export ``model`` to a ModelProto with a dynamic batch axis (``input_shape`` excludes it)."""
    import io

    import onnx
    import torch

    opset = check_opset(opset)
    was_training = model.training
    model.eval()
    buffer = io.BytesIO()
    dummy = torch.zeros(2, *input_shape)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # legacy-exporter deprecation and PRESERVE+folding notes
            torch.onnx.export(
                model, (dummy,), buffer, dynamo=False, opset_version=opset,  # type: ignore[arg-type]
                training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=True,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            )
    except Exception as exc:  # the exporter raises many types
        raise BninceptionError(f"ONNX export failed at opset {opset}: {exc}") from exc
    finally:
        model.train(was_training)
    proto = onnx.load_from_string(buffer.getvalue())
    remove_identities(proto)
    explicit_pool_pads(proto)
    return proto


def export_onnx(model: torch.nn.Module, preprocess: Preprocess, labels: ClassLabels,
                out_path: str | os.PathLike[str], opset: int = 17, source_sha256: str | None = None,
                image_size: int | None = None) -> onnx.ModelProto:
    """Write ``out_path``: input ``data`` (dynamic batch), output ``logits``, BN kept, and the
    metadata of :mod:`bninception.core.metadata` (preprocessing, labels, config, source hash); the model
    written is returned."""
    from bninception.core import metadata
    from bninception.export.onnx_io import check_full

    size = int(image_size or preprocess.size)
    channels = preprocess.channels
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "in_channels", channels) != channels:
        raise BninceptionError(f"preprocessing gives {channels} channel(s) but the model takes "
                               f"{config.in_channels}")
    proto = to_model_proto(model, (channels, size, size), opset)
    metadata.write(proto, metadata.entries(preprocess, labels.ids, config.to_dict() if config is not None else None,
                                           source_sha256, labels.names))
    proto.doc_string = "BN-Inception (bninception); BatchNormalization kept, see model.folded.onnx"
    check_full(proto, str(out_path))
    atomic_write_bytes(out_path, proto.SerializeToString())
    return proto
