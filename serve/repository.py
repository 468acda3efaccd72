"""Export a Triton Inference Server model repository from a run directory.

``DIR/<name>_onnx/1/model.onnx`` + ``config.pbtxt`` (+ ``labels.txt``), and
``DIR/<name>_trt/1/model.plan`` + ``config.pbtxt`` when the run has a TensorRT engine of that
precision (``engines/<key>.plan`` with its ``engines/<key>.json`` sidecar).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from bninception.core.errors import BninceptionError
from bninception.core.files import atomic_write_text, atomic_write_with, sha256_file
from bninception.core.runner import OrtRunner
from bninception.serve.model_info import ModelInfo, model_path_for, read_model_info
from bninception.serve.triton import model_config, to_pbtxt

log = logging.getLogger(__name__)

LABELS_FILE = "labels.txt"


def _copy(source: Path, target: Path) -> None:
    def write(handle: Any) -> None:
        with open(source, "rb") as src:
            shutil.copyfileobj(src, handle, 1 << 20)

    atomic_write_with(target, write)


def _profile_max(sidecar: dict[str, Any]) -> int | None:
    """The largest batch of an engine's optimization profile, from the sidecar's profile record."""
    profile = sidecar.get("profile")
    candidates: list[Any] = []
    if isinstance(profile, dict):
        candidates += [profile.get("max"), profile.get("max_batch")]
    candidates.append(sidecar.get("max_batch"))
    for value in candidates:
        if isinstance(value, list) and value and isinstance(value[0], int):
            return int(value[0])  # a full max shape (N, C, H, W)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def find_engine(run: Path, precision: str) -> tuple[Path, dict[str, Any]] | None:
    """The newest ``engines/<key>.plan`` whose sidecar records ``precision``, with its sidecar."""
    found: list[tuple[float, Path, dict[str, Any]]] = []
    for plan in sorted((run / "engines").glob("*.plan")):
        sidecar_path = plan.with_suffix(".json")
        try:
            sidecar = json.loads(sidecar_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            log.warning("skipping engine %s: no readable sidecar %s (%s)", plan, sidecar_path, exc)
            continue
        if isinstance(sidecar, dict) and sidecar.get("precision") == precision:
            found.append((plan.stat().st_mtime, plan, sidecar))
    if not found:
        return None
    _, plan, sidecar = max(found, key=lambda item: item[0])
    return plan, sidecar


def _write_model(folder: Path, artifact: Path, artifact_name: str, config: dict[str, Any],
                 info: ModelInfo) -> dict[str, Any]:
    _copy(artifact, folder / "1" / artifact_name)
    atomic_write_text(folder / LABELS_FILE, "\n".join(info.labels) + "\n")
    atomic_write_text(folder / "config.pbtxt", to_pbtxt(config))
    return {"name": config["name"], "path": str(folder), "artifact": str(artifact),
            "sha256": sha256_file(folder / "1" / artifact_name), "max_batch_size": config["max_batch_size"]}


def write_repository(run: str | os.PathLike[str], out: str | os.PathLike[str], precision: str = "fp32",
                     name: str = "bninception", max_batch: int = 32, max_delay_us: int = 5000,
                     instances: int = 1) -> dict[str, Any]:
    """Write the repository; returns what was written (and why the TensorRT model was not, if so)."""
    if max_batch < 1 or max_delay_us < 0 or instances < 1:
        raise BninceptionError("max batch and instances must be >= 1, max delay >= 0")
    run_path = Path(run)
    onnx_path = model_path_for(run_path, precision, provider=None)
    info = read_model_info(OrtRunner(onnx_path, what=str(onnx_path)), onnx_path)
    out_path = Path(out)
    report: dict[str, Any] = {"repository": str(out_path), "precision": precision, "models": []}

    onnx_config = model_config(info, f"{name}_onnx", max_batch, max_delay_us, backend="onnxruntime",
                               instances=instances, kind="KIND_AUTO", label_file=LABELS_FILE)
    report["models"].append(_write_model(out_path / f"{name}_onnx", onnx_path, "model.onnx", onnx_config,
                                         info))

    engine = find_engine(run_path, precision)
    if engine is None:
        report["tensorrt"] = (f"no {precision} engine in {run_path / 'engines'} "
                              f"(make one on a GPU host: bninception build-engine --run {run} "
                              f"--precision {precision})")
    else:
        plan, sidecar = engine
        engine_max = _profile_max(sidecar)
        trt_batch = min(max_batch, engine_max) if engine_max else max_batch
        trt_config = model_config(info, f"{name}_trt", trt_batch, max_delay_us, platform="tensorrt_plan",
                                  instances=instances, kind="KIND_GPU", label_file=LABELS_FILE)
        entry = _write_model(out_path / f"{name}_trt", plan, "model.plan", trt_config, info)
        entry["tensorrt_version"] = sidecar.get("tensorrt_version") or sidecar.get("tensorrt")
        report["models"].append(entry)
        report["tensorrt"] = ("the plan runs only on the GPU model and TensorRT version it was built "
                              "with; the Triton image must ship that TensorRT")
    return report
