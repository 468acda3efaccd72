"""Which file of a run serves a precision on a provider, and whether our TensorRT plan can (``serve``,
``triton-repo``): run-level choices that read the run layout and the engine store, so that ``serve/``
needs only the file it is given."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bninception.core import layout
from bninception.core.errors import BninceptionError
from bninception.core.rundir import RunDir

log = logging.getLogger(__name__)


def model_path_for(run: str | os.PathLike[str], precision: str, provider: str | None = "cpu") -> Path:
    """The ONNX file serving ``precision`` on ``provider`` (None: the precision's own file), checked against the
    sha256 the run's manifest recorded for it, or a clear error."""
    if precision not in layout.PRECISION_FILES:
        raise BninceptionError(f"precision must be one of {sorted(layout.PRECISION_FILES)}, got {precision!r}")
    root = Path(run)
    if not root.is_dir():
        raise BninceptionError(f"run directory {root} does not exist")
    for name in layout.served_files(precision, provider):
        if (root / name).is_file():
            return RunDir(root, create=False).verified(name)  # what its stage recorded, unchanged
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
    """Resolve what to serve: our TensorRT plan through ONNX Runtime's TensorRT provider (``engine=True``, or
    by default where it can run), else the precision's ONNX file on the fastest provider here.
    """
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
