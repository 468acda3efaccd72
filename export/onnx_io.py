"""Load ONNX files from users safely, save them checked and atomically."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from bninception.core.errors import BninceptionError

if TYPE_CHECKING:
    import onnx

MAX_ONNX_BYTES = 2 << 30  # protobuf's own limit for a single-file model


def _uses_external_data(model: onnx.ModelProto) -> list[str]:
    import onnx

    names = []
    for tensor in onnx.external_data_helper._get_all_tensors(model):
        if tensor.HasField("data_location") and tensor.data_location == onnx.TensorProto.EXTERNAL:
            names.append(tensor.name)
    return names


def load_onnx(path: str | os.PathLike[str], check: bool = True) -> onnx.ModelProto:
    """Read a single-file ONNX model; refuse a missing, oversized, truncated, graphless or external-data file."""
    path = str(path)
    if not os.path.isfile(path):
        raise BninceptionError(f"ONNX model {path} does not exist")
    size = os.path.getsize(path)
    if size == 0:
        raise BninceptionError(f"{path} is empty, not an ONNX model")
    if size > MAX_ONNX_BYTES:
        raise BninceptionError(f"{path} is {size} bytes, over the 2 GiB single-file ONNX limit")
    with open(path, "rb") as handle:
        return parse_onnx(handle.read(), path, check)


def parse_onnx(data: bytes, path: str, check: bool = True) -> onnx.ModelProto:
    """:func:`load_onnx` on bytes already read (``path`` names them in errors)."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load_from_string(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise BninceptionError(f"{path} is not an ONNX model (or is truncated): {exc}") from exc
    if not model.HasField("graph") or len(model.graph.node) == 0:
        raise BninceptionError(f"{path} is not an ONNX model (or is truncated): it has no graph nodes")
    external = _uses_external_data(model)
    if external:
        raise BninceptionError(
            f"{path} stores {len(external)} tensor(s) as external data (e.g. {external[0]!r}); "
            "only single-file ONNX models are supported: re-save it with "
            "onnx.save(model, path, save_as_external_data=False)")
    if check:
        try:
            onnx.checker.check_model(model)
        except onnx.checker.ValidationError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid model"
            raise BninceptionError(f"{path} is not a valid ONNX model (truncated or corrupt?): "
                                   f"{first}") from exc
    return model


def check_full(model: onnx.ModelProto, what: str = "model") -> None:
    """``onnx.checker`` with full (strict) shape inference, as a BninceptionError naming ``what``."""
    import onnx

    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise BninceptionError(f"{what} fails onnx.checker with full shape inference: {exc}") from exc
