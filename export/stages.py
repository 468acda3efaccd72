"""Run-directory stages: ``export`` (model.pt -> model.onnx) and ``fold`` (-> model.folded.onnx).

Each stage skips itself when the manifest says its inputs, parameters and outputs are unchanged,
checks numerical parity before anything is written (a failed gate leaves the old artifact), and
records itself in the manifest.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from bninception.core.errors import BninceptionError
from bninception.core.files import atomic_path, atomic_write_json
from bninception.core.rundir import RunDir
from bninception.export.to_onnx import read_preprocess

log = logging.getLogger(__name__)

EXPORTER = "torchscript-preserve/1"
FOLD_PASS = "fold_batchnorm/1"


def _torch_logits(model: Any, images: np.ndarray, batch: int = 8) -> np.ndarray:
    import torch

    outs = []
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            outs.append(model(torch.from_numpy(images[i:i + batch])).float().numpy())
    return np.concatenate(outs)


def export_stage(run: RunDir, opset: int = 17, force: bool = False) -> dict[str, Any]:
    """model.pt -> model.onnx (BN kept), gated on ORT (optimizations off) vs PyTorch <= 1e-4."""
    from bninception.export import parity
    from bninception.export.to_onnx import check_opset, export_onnx

    opset = check_opset(opset)
    params = {"opset": opset, "exporter": EXPORTER, "tol": parity.PARITY_TOL}
    inputs, outputs = ["model.pt"], ["model.onnx"]
    run.require("model.pt", "run `bninception train` + `bninception population`, or `import-weights`")
    if not force and run.is_fresh("export", params, inputs, outputs):
        log.info("stage export: up to date, skipped")
        return {"stage": "export", "skipped": True}
    from bninception.model.checkpoint import load_model

    start = time.perf_counter()
    model, preprocess, labels, _ = load_model(run.path("model.pt"))
    size = preprocess.size
    images, source = parity.run_images(run, preprocess, preprocess.channels, size)
    reference = _torch_logits(model, images)
    with atomic_path(run.path("model.onnx")) as tmp:
        export_onnx(model, preprocess, labels, tmp, opset=opset,
                    source_sha256=run.sha256("model.pt"), image_size=size)
        candidate = parity.run_session(parity.session(tmp), images)
        result = parity.check(reference, candidate, source, "export parity (ORT vs PyTorch)")
        import onnx

        proto = onnx.load(str(tmp))
        bn_nodes = sum(n.op_type == "BatchNormalization" for n in proto.graph.node)
        nodes = len(proto.graph.node)
    seconds = time.perf_counter() - start
    run.record("export", params, inputs, outputs, seconds)
    log.info(f"stage export: model.onnx (opset {opset}, {nodes} nodes, {bn_nodes} BatchNormalization); "
         f"parity vs PyTorch max abs diff {result.max_abs_diff:.3g} on {result.source}")
    return {"stage": "export", "skipped": False, "opset": opset, "nodes": nodes, "bn_nodes": bn_nodes,
            "parity": result.to_dict(), "seconds": round(seconds, 3)}


def fold_stage(run: RunDir, force: bool = False) -> dict[str, Any]:
    """model.onnx -> model.folded.onnx + fold_report.json, gated on ORT parity vs model.onnx <= 1e-4."""
    from bninception.export import parity
    from bninception.export.fold import fold_batchnorm
    from bninception.export.onnx_io import check_full, load_onnx

    params = {"pass": FOLD_PASS, "tol": parity.PARITY_TOL}
    inputs, outputs = ["model.onnx"], ["model.folded.onnx", "fold_report.json"]
    source_path = run.require("model.onnx", "run `bninception export` first")
    if not force and run.is_fresh("fold", params, inputs, outputs):
        log.info("stage fold: up to date, skipped")
        return {"stage": "fold", "skipped": True}
    start = time.perf_counter()
    model = load_onnx(source_path)
    folded, report = fold_batchnorm(model)
    check_full(folded, str(run.path("model.folded.onnx")))
    spec = parity.session(source_path)
    shape = spec.get_inputs()[0].shape
    if len(shape) != 4 or not all(isinstance(d, int) for d in shape[1:]):
        raise BninceptionError(f"{source_path}: input must be (N, C, H, W), got {shape}")
    preprocess = read_preprocess(model, "model.onnx")
    if preprocess is not None and preprocess.size == shape[2] == shape[3]:
        images, source = parity.run_images(run, preprocess, shape[1], shape[2])
    else:
        images, source = parity.random_inputs(tuple(shape[1:]), count=8), "8 random inputs"
    reference = parity.run_session(spec, images)
    candidate = parity.run_session(parity.session(folded), images)
    result = parity.check(reference, candidate, source, "fold parity (folded vs model.onnx, ORT)")
    payload = {**report.to_dict(), "parity": result.to_dict()}
    with atomic_path(run.path("model.folded.onnx")) as tmp:
        tmp.write_bytes(folded.SerializeToString())
        atomic_write_json(run.path("fold_report.json"), payload)
    seconds = time.perf_counter() - start
    run.record("fold", params, inputs, outputs, seconds)
    lines = report.summary().splitlines()
    log.info(f"stage fold: {lines[0]}; parity max abs diff {result.max_abs_diff:.3g} on {result.source}")
    for line in lines[2:]:  # BN nodes left, with their reasons
        log.info(f"  {line}")
    return {"stage": "fold", "skipped": False, "bn_before": report.bn_before, "bn_after": report.bn_after,
            "folded": report.folded_total, "left": len(report.left), "parity": result.to_dict(),
            "seconds": round(seconds, 3)}
