"""``bninception fold IN.onnx -o OUT.onnx``: fold any single-file ONNX model, checked on random inputs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bninception.core.errors import BninceptionError

if TYPE_CHECKING:
    import onnx

FP16_TOL = 1e-2  # the FP32 tolerance is the FP32 gate's; both relative to max(1, max|reference|)


def default_output(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    stem = path.name[:-5] if path.name.endswith(".onnx") else path.name
    return path.with_name(f"{stem}.folded.onnx")


def random_feeds(model: onnx.ModelProto, seed: int = 0,
                 batch: int = 2) -> tuple[dict[str, np.ndarray] | None, str]:
    """Random normal feeds for every float graph input, or (None, why not)."""
    from bninception.export.graph import FLOAT_TYPES

    inits = {t.name for t in model.graph.initializer}
    rng = np.random.default_rng(seed)
    feeds = {}
    for value in model.graph.input:
        if value.name in inits:
            continue
        ttype = value.type.tensor_type
        if not value.type.HasField("tensor_type") or ttype.elem_type not in FLOAT_TYPES:
            return None, f"input {value.name!r} is not a float tensor"
        dims = []
        for index, dim in enumerate(ttype.shape.dim):
            if dim.HasField("dim_value") and dim.dim_value > 0:
                dims.append(dim.dim_value)
            elif index == 0:
                dims.append(batch)
            else:
                return None, f"input {value.name!r} has a symbolic dimension {index} ({dim.dim_param!r})"
        dtype = FLOAT_TYPES[ttype.elem_type]
        feeds[value.name] = rng.standard_normal(dims).astype(dtype)
    return feeds, ""


def parity_on_random(model: onnx.ModelProto, folded: onnx.ModelProto) -> dict[str, Any]:
    """Max abs diff over all outputs on random inputs (ORT, optimizations off), gated relatively."""
    from bninception.core.errors import GateFailure
    from bninception.core.gates import GATES
    from bninception.core.ort import create_session

    feeds, why = random_feeds(model)
    if feeds is None:
        return {"checked": False, "reason": why}
    fp16 = any(t.data_type == 10 for t in model.graph.initializer)  # TensorProto.FLOAT16
    tol = FP16_TOL if fp16 else float(GATES["fp32"].max_abs_diff or 0.0)
    ref = create_session(model, optimization="disable", what="the input model").run(None, feeds)
    out = create_session(folded, optimization="disable", what="the folded model").run(None, feeds)
    diff = max((float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
                for a, b in zip(ref, out, strict=True) if np.asarray(a).size), default=0.0)
    scale = max((float(np.max(np.abs(np.asarray(a, np.float64)))) for a in ref if np.asarray(a).size),
                default=0.0)
    result = {"checked": True, "max_abs_diff": diff, "max_abs_ref": scale, "tol": tol * max(1.0, scale)}
    if not diff <= tol * max(1.0, scale):
        raise GateFailure(f"fold parity on random inputs: max abs diff {diff:.3g} > "
                          f"{tol:g} x max(1, {scale:.3g})")
    return result


def fold_file(src: str | os.PathLike[str], dst: str | os.PathLike[str] | None = None,
              check: bool = True) -> dict[str, Any]:
    """Fold ``src`` into ``dst`` (default ``*.folded.onnx``); nothing is written on any error."""
    from bninception.core.files import atomic_write_bytes
    from bninception.export.fold import fold_batchnorm
    from bninception.export.onnx_io import check_full, load_onnx

    out = Path(dst) if dst else default_output(src)
    if out.is_dir():
        raise BninceptionError(f"-o {out} is a directory; give the output file's path")
    model = load_onnx(src)
    folded, report = fold_batchnorm(model)
    check_full(folded, f"folded {src}")
    if not report.bn_before:
        result: dict[str, Any] = {"checked": False, "reason": "no BatchNormalization: the model is unchanged"}
    else:
        result = parity_on_random(model, folded) if check else {"checked": False, "reason": "--no-check"}
    atomic_write_bytes(out, folded.SerializeToString())
    note = "" if report.bn_before else " (no BatchNormalization nodes: written unchanged)"
    return {"input": str(src), "output": str(out), **report.to_dict(), "parity": result,
            "summary": f"{out}{note}: {report.summary()}"}
