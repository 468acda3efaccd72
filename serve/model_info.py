"""What the server knows about a model: its file in the run, I/O, labels, recorded preprocessing.

The interface comes from the model's Runner (one NCHW float input, first output = logits), the
rest from the metadata export wrote (:mod:`bninception.core.metadata`). Every entry is optional:
without labels the classes are their indices; without preprocessing ``/v1/classify`` is off.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bninception.core import layout, metadata
from bninception.core.errors import BninceptionError
from bninception.core.runner import InputSpec

if TYPE_CHECKING:
    from bninception.core.preprocess import Preprocess
    from bninception.core.runner import OrtRunner

log = logging.getLogger(__name__)


def model_path_for(run: str | os.PathLike[str], precision: str, provider: str | None = "cpu") -> Path:
    """The ONNX file serving ``precision`` on ``provider`` in run directory ``run``, or a clear error.

    ``provider=None``: the precision's own file, whatever runtime will run it (Triton).
    """
    if precision not in layout.PRECISION_FILES:
        raise BninceptionError(f"precision must be one of {sorted(layout.PRECISION_FILES)}, got {precision!r}")
    root = Path(run)
    if not root.is_dir():
        raise BninceptionError(f"run directory {root} does not exist")
    for name in layout.served_files(precision, provider):
        if (root / name).is_file():
            return root / name
    name = layout.PRECISION_FILES[precision]
    raise BninceptionError(f"{root / name} is missing (the {precision} model; "
                           f"{layout.make_hint(name, root)})")


@dataclass(frozen=True)
class ServedModel:
    """What ``serve`` runs: a file, the providers it runs on, and an engine's batch bound if it is one."""

    path: Path
    providers: tuple[str, ...]
    max_batch: int | None = None
    engine: str | None = None  # the engine key when the file is our plan's EPContext wrapper


def _engine_model(run: Path, precision: str) -> ServedModel:
    """The run's usable ``precision`` engine for this host, as its EPContext wrapper (a clear error if none)."""
    from bninception.engines.detect import probe_host
    from bninception.engines.epcontext import check_provider
    from bninception.engines.store import select_engine

    check_provider()
    here, why = probe_host()
    if here is None:
        raise BninceptionError(f"--engine: TensorRT engines cannot run here: {why}")
    record = select_engine(run, precision, here)
    if record.sidecar is None or not record.context_path.is_file():
        raise BninceptionError(f"{record.context_path} is missing; rebuild it with `bninception build-engine "
                               f"--run {run} --precision {precision}`")
    return ServedModel(record.context_path, ("tensorrt",), record.sidecar.spec.profile.max, record.key)


def served_model(run: str | os.PathLike[str], precision: str, requested: Sequence[str] | None = None,
                 engine: bool | None = None, model: str | os.PathLike[str] | None = None) -> ServedModel:
    """Resolve what to serve. ``engine=True``: our TensorRT plan through ONNX Runtime's TensorRT provider;
    ``None`` (default): that plan where this ONNX Runtime has the provider and the run a usable engine,
    else the precision's ONNX file (or ``model``) on the fastest provider that runs ONNX files here (or
    ``requested``)."""
    from bninception.core.ort import available, onnx_providers, provider_name, user_name

    root = Path(run)
    wanted = tuple(user_name(provider_name(p)) for p in requested or ())
    if model is not None:
        return ServedModel(Path(model), wanted or tuple(onnx_providers()[:1]))
    if engine or wanted[:1] == ("tensorrt",):
        return _engine_model(root, precision)
    if engine is None and not wanted and "tensorrt" in available():
        try:
            return _engine_model(root, precision)
        except BninceptionError as exc:
            log.info("serving the ONNX file, not a TensorRT plan: %s", exc)
    providers = wanted or tuple(onnx_providers()[:1])
    return ServedModel(model_path_for(root, precision, providers[0]), providers)


@dataclass(frozen=True)
class ModelInfo:
    """The served model's interface and the metadata recorded at export."""

    path: Path
    input: InputSpec
    output: str
    num_classes: int
    labels: list[str]
    preprocess: Preprocess | None
    metadata: dict[str, str] = field(default_factory=dict)

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
                     labels=meta.labels_for(num_classes), preprocess=pre, metadata=values)
