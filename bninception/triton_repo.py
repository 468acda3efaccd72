"""Export a Triton model repository from a run: ``<name>_onnx`` and, with a usable engine, ``<name>_trt``."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from bninception.core.errors import BninceptionError
from bninception.core.files import atomic_write_text, atomic_write_with, sha256_file
from bninception.core.runner import OrtRunner
from bninception.engines.store import select_engine
from bninception.serve.model_info import ModelInfo, read_model_info
from bninception.serve.triton import model_config, to_pbtxt
from bninception.served import model_path_for

log = logging.getLogger(__name__)

LABELS_FILE = "labels.txt"


def _copy(source: Path, target: Path) -> None:
    def write(handle: Any) -> None:
        with open(source, "rb") as src:
            shutil.copyfileobj(src, handle, 1 << 20)

    atomic_write_with(target, write)


def _write_model(folder: Path, artifact: Path, artifact_name: str, config: dict[str, Any],
                 info: ModelInfo) -> dict[str, Any]:
    _copy(artifact, folder / "1" / artifact_name)
    atomic_write_text(folder / LABELS_FILE, "\n".join(info.label_names) + "\n")  # shown by Triton's classification
    atomic_write_text(folder / "config.pbtxt", to_pbtxt(config))
    return {"name": config["name"], "path": str(folder), "artifact": str(artifact),
            "sha256": sha256_file(folder / "1" / artifact_name), "max_batch_size": config["max_batch_size"]}


def write_repository(run: str | os.PathLike[str], out: str | os.PathLike[str], precision: str = "fp32",
                     name: str = "bninception", max_batch: int = 32, max_delay_us: int = 0,
                     instances: int = 1) -> dict[str, Any]:
    """Write the repository; returns what was written (and why the TensorRT model was not, if so)."""
    from bninception.serve.config import NAME

    if max_batch < 1 or max_delay_us < 0 or instances < 1:
        raise BninceptionError("max batch and instances must be >= 1, max delay >= 0")
    if not NAME.match(name):  # a folder name inside the repository, never a path out of it
        raise BninceptionError(f"--name {name[:64]!r} must be 1-64 letters, digits, '_', '.' or '-'")
    out_path = Path(out)
    if out_path.exists() and not out_path.is_dir():
        raise BninceptionError(f"-o {out_path} is a file; give the folder the repository goes into")
    run_path = Path(run)
    onnx_path = model_path_for(run_path, precision, provider=None)
    info = read_model_info(OrtRunner(onnx_path, what=str(onnx_path)), onnx_path)
    report: dict[str, Any] = {"repository": str(out_path), "precision": precision, "models": []}

    onnx_config = model_config(info, f"{name}_onnx", max_batch, max_delay_us, backend="onnxruntime",
                               instances=instances, kind="KIND_AUTO", label_file=LABELS_FILE)
    report["models"].append(_write_model(out_path / f"{name}_onnx", onnx_path, "model.onnx", onnx_config,
                                         info))

    try:  # built from the current ONNX file and intact; the Triton host is not this one, so no GPU check
        record = select_engine(run_path, precision)
    except BninceptionError as exc:
        report["tensorrt"] = f"no TensorRT model: {exc}"
        return report
    assert record.sidecar is not None
    spec = record.sidecar.spec
    trt_config = model_config(info, f"{name}_trt", min(max_batch, spec.profile.max), max_delay_us,
                              platform="tensorrt_plan", instances=instances, kind="KIND_GPU", label_file=LABELS_FILE)
    entry = _write_model(out_path / f"{name}_trt", record.plan_path, "model.plan", trt_config, info)
    entry.update(engine=record.key, tensorrt_version=spec.env.trt_version, gpu=spec.env.gpu_name)
    report["models"].append(entry)
    report["tensorrt"] = (f"the plan runs only with TensorRT {spec.env.trt_version} on {spec.env.gpu_name} "
                          f"(hardware compatibility {spec.options.hardware_compatibility}); the Triton image "
                          "must ship that TensorRT")
    return report
